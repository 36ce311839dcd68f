#!/usr/bin/python3
"""A misbehaving upstream for agentd's tests: an HTTP(S) server on 127.0.0.1
that forwards POST /logs to a real receiver, except for the requests it is told
to spoil. Standard library only; usable as a module (the e2e tests run it in a
thread) or from the command line.

Faults, each for the next COUNT requests (then it forwards again):

  reset      forward the request, then send half a response and reset the
             connection (SO_LINGER 0): the records are stored, agentd never
             hears so, and must resend them (duplicates, at-least-once)
  reset-early  reset without forwarding and without answering
  hang       read the request and never answer (agentd's timeout_ms must
             fire); nothing is forwarded
  redirect   answer 301 or 302 (status=...) with Location pointing to
             location=URL; nothing is forwarded (agentd must not follow it)
  garbage    answer 200 with a body that is not the server's JSON; with
             forward=True the records are stored first (duplicates follow)
  status     answer status=N with body=... without forwarding

Connection refused is simply the server not listening: FaultyUpstream(...,
port=P) binds P only at start(), so a test can point agentd at P first.

    up = FaultyUpstream("http://127.0.0.1:8000", tls=(cert, key)).start()
    up.fault("hang", count=2)
    ... up.log  # one dict per request: time, fault, status, headers, body_bytes
    up.stop()

Command line: faulty_upstream.py --backend URL [--port N] [--tls CERT KEY]
[--fault NAME --count N] prints "faulty upstream ready on URL".
"""
import argparse
import json
import socket
import ssl
import struct
import sys
import threading
import time
import urllib.error
import urllib.request

MAX_BODY = 512 * 1024 * 1024
HDR_MAX = 64 * 1024


class FaultyUpstream:
    def __init__(self, backend, port=0, tls=None, host="127.0.0.1"):
        self.backend = backend.rstrip("/")
        self.host = host
        self.port = port
        self.tls = tls
        self.log = []
        self.faults = []  # [name, remaining, opts]
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.sock = None
        self.thread = None
        self.conns = set()
        self.accepted = 0
        self.tls_failures = 0

    # ---- control -------------------------------------------------------------
    @property
    def url(self):
        scheme = "https" if self.tls else "http"
        return f"{scheme}://{self.host}:{self.port}/logs"

    def fault(self, name, count=1, **opts):
        """Spoil the next count requests with fault name (queued after earlier faults)."""
        assert name in ("reset", "reset-early", "hang", "redirect", "garbage", "status"), name
        with self.lock:
            self.faults.append([name, count, opts])

    def clear(self):
        with self.lock:
            self.faults = []

    def requests(self, fault=None):
        with self.lock:
            return [r for r in self.log if fault is None or r["fault"] == fault]

    def _take_fault(self):
        with self.lock:
            while self.faults and self.faults[0][1] <= 0:
                self.faults.pop(0)
            if not self.faults:
                return None, {}
            f = self.faults[0]
            f[1] -= 1
            return f[0], f[2]

    # ---- lifecycle -----------------------------------------------------------
    def start(self):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((self.host, self.port))
        s.listen(128)
        s.settimeout(0.2)
        self.port = s.getsockname()[1]
        self.sock = s
        self.stopping.clear()
        self.ctx = None
        if self.tls:
            self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self.ctx.load_cert_chain(self.tls[0], self.tls[1])
        self.thread = threading.Thread(target=self._accept_loop, name="faulty-upstream", daemon=True)
        self.thread.start()
        return self

    def stop(self):
        """Stop listening and drop every connection (new connections are refused)."""
        self.stopping.set()
        if self.thread:
            self.thread.join(5)
            self.thread = None
        if self.sock:
            self.sock.close()
            self.sock = None
        with self.lock:
            conns = list(self.conns)
        for c in conns:
            try:
                c.close()
            except OSError:
                pass

    def _accept_loop(self):
        while not self.stopping.is_set():
            try:
                c, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                break
            self.accepted += 1
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    # ---- one connection ------------------------------------------------------
    def _serve(self, c):
        c.settimeout(0.5)
        if self.ctx:
            try:
                c = self.ctx.wrap_socket(c, server_side=True)
            except (ssl.SSLError, OSError):
                self.tls_failures += 1
                c.close()
                return
        with self.lock:
            self.conns.add(c)
        buf = b""
        try:
            while not self.stopping.is_set():
                req, buf = self._read_request(c, buf)
                if req is None:
                    break
                if not self._answer(c, req):
                    break
        except (OSError, ValueError):
            pass
        finally:
            with self.lock:
                self.conns.discard(c)
            try:
                c.close()
            except OSError:
                pass

    def _recv(self, c):
        while not self.stopping.is_set():
            try:
                return c.recv(65536)
            except socket.timeout:
                continue
        return b""

    def _read_request(self, c, buf):
        while b"\r\n\r\n" not in buf:
            if len(buf) > HDR_MAX:
                raise ValueError("headers too long")
            d = self._recv(c)
            if not d:
                return None, b""
            buf += d
        head, buf = buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        method, path, _ = lines[0].split(" ", 2)
        headers = {}
        for ln in lines[1:]:
            k, _, v = ln.partition(":")
            headers[k.strip().lower()] = v.strip()
        n = int(headers.get("content-length", "0"))
        if n > MAX_BODY:
            raise ValueError("body too long")
        while len(buf) < n:
            d = self._recv(c)
            if not d:
                return None, b""
            buf += d
        body, buf = buf[:n], buf[n:]
        return {"method": method, "path": path, "headers": headers, "body": body}, buf

    def _forward(self, req):
        """(status, body bytes) from the backend."""
        h = {k: v for k, v in req["headers"].items()
             if k in ("content-type", "content-encoding", "authorization")}
        r = urllib.request.Request(self.backend + req["path"], data=req["body"] if req["method"] == "POST" else None,
                                   method=req["method"], headers=h)
        try:
            with urllib.request.urlopen(r, timeout=60) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()
        except OSError as e:
            return 502, json.dumps({"detail": f"backend: {e}"}).encode()

    @staticmethod
    def _response(status, body, extra=None, reason="X"):
        hdrs = [f"HTTP/1.1 {status} {reason}", f"Content-Length: {len(body)}", "Content-Type: application/json"]
        hdrs += [f"{k}: {v}" for k, v in (extra or {}).items()]
        return ("\r\n".join(hdrs) + "\r\n\r\n").encode() + body

    def _reset(self, c):
        try:
            c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        if isinstance(c, ssl.SSLSocket):  # no close_notify: reset the TCP connection under it
            try:
                socket.socket(fileno=c.detach()).close()
            except OSError:
                pass
            return
        c.close()

    def _answer(self, c, req):
        """Answer one request; False closes the connection."""
        name, opts = (None, {}) if req["path"] != "/logs" else self._take_fault()
        entry = {"time": time.time(), "fault": name, "method": req["method"], "path": req["path"],
                 "headers": req["headers"], "body_bytes": len(req["body"]), "status": None, "forwarded": False}
        with self.lock:
            self.log.append(entry)
        if name is None:
            status, body = self._forward(req)
            entry.update(status=status, forwarded=True)
            c.sendall(self._response(status, body))
            return True
        if name == "reset" or name == "reset-early":
            if name == "reset":
                status, body = self._forward(req)
                entry.update(status=status, forwarded=True)
                c.sendall(self._response(status, body + b" " * 64)[: 40])
            self._reset(c)
            return False
        if name == "hang":
            while not self.stopping.is_set():
                try:
                    if not c.recv(4096):
                        break
                except socket.timeout:
                    continue
                except OSError:
                    break
            return False
        if name == "redirect":
            status = opts.get("status", 302)
            entry["status"] = status
            c.sendall(self._response(status, b"", {"Location": opts["location"]}, reason="Moved"))
            return True
        if name == "garbage":
            if opts.get("forward"):
                st, _ = self._forward(req)
                entry.update(forwarded=True, backend_status=st)
            entry["status"] = 200
            c.sendall(self._response(200, opts.get("body", b"<html>\x00\xff not json {\"count\":")))
            return True
        if name == "status":
            status = opts.get("status", 503)
            entry["status"] = status
            c.sendall(self._response(status, opts.get("body", b'{"detail":"injected"}')))
            return True
        return False


def main(argv=None):
    ap = argparse.ArgumentParser(description="a misbehaving upstream in front of a receiver")
    ap.add_argument("--backend", required=True, help="receiver base URL, e.g. http://127.0.0.1:8000")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--tls", nargs=2, metavar=("CERT", "KEY"))
    ap.add_argument("--fault", default=None)
    ap.add_argument("--count", type=int, default=1_000_000_000)
    args = ap.parse_args(argv)
    up = FaultyUpstream(args.backend, port=args.port, tls=args.tls).start()
    if args.fault:
        up.fault(args.fault, args.count)
    print(f"faulty upstream ready on {up.url}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        up.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
