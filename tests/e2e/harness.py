"""End-to-end harness: a throwaway PostgreSQL cluster, the reference receiver,
agentd processes, and helpers to send records and to look at what landed.

Everything started here is stopped by its owner's stop(), and also at
interpreter exit (atexit), so a failing or interrupted test leaves nothing
running. Environment:

  AGENTD_BUILD          build directory (default: <repo>/build)
  AGENTD_BIN            agentd binary (default: $AGENTD_BUILD/bin/agentd)
  AGENTD_WRAPPER        command prefix for agentd, e.g. "valgrind -q --error-exitcode=99"
  E2E_TIMEOUT_SCALE     multiply every timeout (default 1, or 5 with a wrapper)
  AGENTD_LOG_LEVEL      [agentd] log_level written into every test config
"""
import asyncio
import atexit
import json
import os
import shlex
import shutil
import signal
import socket
import stat
import struct
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.path.abspath(os.environ.get("AGENTD_BUILD") or os.path.join(REPO, "build"))
AGENTD_BIN = os.environ.get("AGENTD_BIN") or os.path.join(BUILD, "bin", "agentd")
AGENT_LOG = os.path.join(BUILD, "bin", "agent-log")
AGENT_FLOOD = os.path.join(BUILD, "tests", "agent-flood")
WRAPPER = shlex.split(os.environ.get("AGENTD_WRAPPER", ""))
SCALE = float(os.environ.get("E2E_TIMEOUT_SCALE") or (5 if WRAPPER else 1))
PG_BIN = "/usr/lib/postgresql/15/bin"
PYTHON = "/usr/bin/python3"
RECEIVER = os.path.join(REPO, "tests", "receiver", "receiver.py")
QLEN_PATH = "/proc/sys/net/unix/max_dgram_qlen"

_cleanups = []


def _run_cleanups():
    while _cleanups:
        fn = _cleanups.pop()
        try:
            fn()
        except Exception as e:  # keep cleaning up the rest
            print(f"harness cleanup: {e}", file=sys.stderr)


atexit.register(_run_cleanups)


def _terminated(signum, frame):
    # SIGTERM would skip atexit: leave through it so nothing keeps running
    raise SystemExit(128 + signum)


if signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
    signal.signal(signal.SIGTERM, _terminated)


def on_exit(fn):
    _cleanups.append(fn)
    return fn


def forget(fn):
    if fn in _cleanups:
        _cleanups.remove(fn)


def wait_for(cond, timeout=10.0, interval=0.05, what="condition"):
    """Poll cond() until it returns a true value (returned) or fail."""
    deadline = time.monotonic() + timeout * SCALE
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout * SCALE:.1f} s waiting for {what}")
        time.sleep(interval)


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def is_root():
    return os.geteuid() == 0


# ---- net.unix.max_dgram_qlen ----------------------------------------------

def raise_dgram_qlen(value=512):
    """Raise net.unix.max_dgram_qlen when root; returns a function restoring it."""
    if not is_root():
        return lambda: None
    try:
        with open(QLEN_PATH) as f:
            old = f.read().strip()
        if int(old) >= value:
            return lambda: None
        with open(QLEN_PATH, "w") as f:
            f.write(str(value))
    except OSError:
        return lambda: None

    def restore():
        try:
            with open(QLEN_PATH, "w") as f:
                f.write(old)
        except OSError:
            pass
    return on_exit(restore)


# ---- PostgreSQL -------------------------------------------------------------

class PgCluster:
    """A private cluster: data dir and unix socket in a temp dir, no TCP."""

    def __init__(self):
        self.dir = None
        self.port = free_port()
        self.user = "postgres"
        self.db = "postgres"

    def _as_pg(self, argv, **kw):
        prefix = ["runuser", "-u", "postgres", "--"] if is_root() else []
        return subprocess.run(prefix + argv, check=True, capture_output=True, text=True, **kw)

    def start(self):
        self.dir = tempfile.mkdtemp(prefix="agentd-pg-")
        on_exit(self.stop)
        if is_root():
            shutil.chown(self.dir, "postgres", "postgres")
        self.data = os.path.join(self.dir, "data")
        self.sockdir = self.dir
        self.log = os.path.join(self.dir, "pg.log")
        self.user = "postgres" if is_root() else os.environ.get("USER", "postgres")
        self._as_pg([f"{PG_BIN}/initdb", "-D", self.data, "-U", self.user, "-A", "trust", "-E", "UTF8",
                     "--locale=C", "--no-sync"])
        with open(os.path.join(self.data, "postgresql.conf"), "a") as f:
            f.write(f"listen_addresses = ''\nunix_socket_directories = '{self.sockdir}'\nport = {self.port}\n"
                    "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n"
                    "shared_buffers = 32MB\nmax_connections = 30\n"
                    # JIT makes a new connection's first COPY take seconds: answers
                    # come late, and agentd resends batches that were stored
                    "jit = off\n")
        self._as_pg([f"{PG_BIN}/pg_ctl", "-D", self.data, "-l", self.log, "-w", "-t", "60", "start"])
        return self

    @property
    def dsn(self):
        return f"postgresql://{self.user}@/{self.db}?host={self.sockdir}&port={self.port}"

    def stop(self):
        if not self.dir:
            return
        try:
            self._as_pg([f"{PG_BIN}/pg_ctl", "-D", self.data, "-m", "immediate", "-w", "-t", "20", "stop"])
        except (subprocess.CalledProcessError, OSError):
            try:
                with open(os.path.join(self.data, "postmaster.pid")) as f:
                    os.kill(int(f.readline()), signal.SIGKILL)
            except (OSError, ValueError):
                pass
        shutil.rmtree(self.dir, ignore_errors=True)
        self.dir = None
        forget(self.stop)

    # queries ----------------------------------------------------------------
    async def _fetch(self, sql, args):
        import asyncpg
        conn = await asyncpg.connect(self.dsn)
        try:
            return await conn.fetch(sql, *args)
        finally:
            await conn.close()

    def rows(self, sql, *args):
        """Rows as dicts; jsonb columns are decoded."""
        out = []
        for r in asyncio.run(self._fetch(sql, args)):
            d = dict(r)
            for k, v in d.items():
                if k == "metadata" and isinstance(v, str):
                    d[k] = json.loads(v)
            out.append(d)
        return out

    def scalar(self, sql, *args):
        r = asyncio.run(self._fetch(sql, args))
        return r[0][0] if r else None

    def count(self, where="true", *args):
        return self.scalar(f"SELECT count(*) FROM logs WHERE {where}", *args)

    def psql_command(self, sql):
        return f"psql -h {self.sockdir} -p {self.port} -U {self.user} {self.db} -c {shlex.quote(sql)}"


# ---- the receiver -------------------------------------------------------------

class Receiver:
    def __init__(self, pg, workdir):
        self.pg = pg
        self.workdir = workdir
        self.proc = None

    def start(self, port=0, timeout=30):
        self.out = os.path.join(self.workdir, "receiver.log")
        with open(self.out, "w") as f:
            self.proc = subprocess.Popen(
                [PYTHON, RECEIVER, "--host", "127.0.0.1", "--port", str(port), "--dsn", self.pg.dsn],
                stdout=f, stderr=subprocess.STDOUT, start_new_session=True)
        on_exit(self.stop)

        def ready():
            if self.proc.poll() is not None:
                raise AssertionError(f"receiver exited {self.proc.returncode}:\n{self.output()}")
            for line in self.output().splitlines():
                if line.startswith("receiver ready on "):
                    return line.split()[-1]
            return None
        self.base = wait_for(ready, timeout, what="the receiver")
        self.url = self.base + "/logs"
        return self

    def output(self):
        with open(self.out, errors="replace") as f:
            return f.read()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        forget(self.stop)

    # HTTP -------------------------------------------------------------------------
    def request(self, method, path, body=None, headers=None):
        """(status, headers with lower-case names, parsed JSON or text) of a request."""
        data = body if isinstance(body, (bytes, type(None))) else json.dumps(body).encode()
        req = urllib.request.Request(self.base + path, data=data, method=method, headers=headers or {})
        if data is not None and "Content-Type" not in (headers or {}):
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                status, hdrs, text = r.status, r.headers, r.read().decode()
        except urllib.error.HTTPError as e:
            status, hdrs, text = e.code, e.headers, e.read().decode()
        hdrs = {k.lower(): v for k, v in hdrs.items()}
        try:
            return status, hdrs, json.loads(text)
        except ValueError:
            return status, hdrs, text

    def _control(self, path, body=None):
        status, _, js = self.request("POST", "/_test/" + path, body or {})
        assert status == 200, f"receiver /_test/{path}: {status} {js}"

    def reset(self):
        self._control("reset")

    def fail(self, count, status=503, retry_after=None):
        self._control("fail", {"count": count, "status": status, "retry_after": retry_after})

    def delay(self, ms, only_ok=False):
        self._control("delay", {"ms": ms, "only_ok": only_ok})

    def refuse(self, pattern):
        self._control("refuse", {"pattern": pattern})

    def requests(self):
        return self.request("GET", "/_test/requests")[2]["requests"]


# ---- agentd ---------------------------------------------------------------------

def agentd_available():
    return os.access(AGENTD_BIN, os.X_OK)


def render_config(sections):
    lines = []
    for sec, kv in sections.items():
        lines.append(f"[{sec}]")
        for k, v in kv.items():
            if v is None:
                continue
            if isinstance(v, bool):
                v = "true" if v else "false"
            lines.append(f"{k} = {v}")
        lines.append("")
    return "\n".join(lines)


def merge(base, over):
    out = {s: dict(kv) for s, kv in base.items()}
    for s, kv in (over or {}).items():
        out.setdefault(s, {}).update(kv)
    return out


class Agentd:
    """One agentd process with its own config, sockets and stderr file."""

    def __init__(self, workdir, upstream_url, overrides=None, name="agentd"):
        self.dir = os.path.join(workdir, name)
        os.makedirs(self.dir, exist_ok=True)
        self.sock = os.path.join(self.dir, "in.sock")
        self.stream = os.path.join(self.dir, "in.stream")
        self.ctl = os.path.join(self.dir, "ctl.sock")
        self.spool = os.path.join(workdir, "spool")
        base = {
            "agentd": {"shutdown_timeout_ms": 10000, "log_level": os.environ.get("AGENTD_LOG_LEVEL")},
            "ingest": {"socket": self.sock, "stream_socket": self.stream},
            "upstream": {"url": upstream_url, "timeout_ms": 10000},
            "retry": {"initial_backoff_ms": 200, "max_backoff_ms": 2000},
            "spool": {"dir": self.spool},
            "control": {"socket": self.ctl},
        }
        self.sections = merge(base, overrides)
        self.sock = self.sections["ingest"]["socket"]
        self.stream = self.sections["ingest"]["stream_socket"]
        self.spool = self.sections["spool"].get("dir") or None
        self.config = os.path.join(self.dir, "agentd.conf")
        self.errfile = os.path.join(self.dir, "stderr.log")
        self.proc = None
        self.returncode = None
        self.write_config()

    def write_config(self, overrides=None):
        if overrides:
            self.sections = merge(self.sections, overrides)
        with open(self.config, "w") as f:
            f.write(render_config(self.sections))

    def start(self, timeout=10):
        if self.spool:
            os.makedirs(self.spool, exist_ok=True)
        with open(self.errfile, "ab") as err:
            self.proc = subprocess.Popen(WRAPPER + [AGENTD_BIN, "-c", self.config], stdin=subprocess.DEVNULL,
                                         stdout=err, stderr=err, start_new_session=True)
        on_exit(self.kill)

        # every socket agentd was told to create, not only the ingest one
        socks = [p for p in (self.sock, self.sections["ingest"].get("stream_socket"),
                             self.sections.get("control", {}).get("socket")) if p]

        def ready():
            if self.proc.poll() is not None:
                raise AssertionError(f"agentd exited {self.proc.returncode} at start:\n{self.stderr()}")
            try:
                return all(stat.S_ISSOCK(os.stat(p).st_mode) for p in socks)
            except FileNotFoundError:
                return False
        wait_for(ready, timeout, what=f"agentd's sockets {socks}")
        return self

    def stderr(self):
        try:
            with open(self.errfile, errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig):
        self.proc.send_signal(sig)

    def stop(self, timeout=None):
        """SIGTERM and wait; returns the exit status (negative: killed by that signal)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            if timeout is None:
                timeout = self.sections["agentd"].get("shutdown_timeout_ms", 10000) / 1000 + 10
            try:
                self.proc.wait(timeout * SCALE)
            except subprocess.TimeoutExpired:
                self.kill()
                raise AssertionError(f"agentd did not exit within {timeout * SCALE:.0f} s of SIGTERM "
                                     f"(killed):\n{self.stderr()}")
        self.returncode = self.proc.returncode
        forget(self.kill)
        return self.returncode

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        forget(self.kill)

    def spool_bytes(self):
        total = 0
        if self.spool and os.path.isdir(self.spool):
            for root, _, files in os.walk(self.spool):
                total += sum(os.path.getsize(os.path.join(root, f)) for f in files)
        return total


# ---- sending records ------------------------------------------------------------

T_STRING, T_INT64, T_DOUBLE, T_BOOL = 1, 2, 3, 4
LEVELS = ["TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL"]


def _b(s):
    return s if isinstance(s, bytes) else s.encode()


def encode_field(key, value, ftype=None):
    """One field as PROTOCOL.md lays it out; the type follows the Python value."""
    k = _b(key)
    if ftype is None:
        if isinstance(value, bool):
            ftype = T_BOOL
        elif isinstance(value, int):
            ftype = T_INT64
        elif isinstance(value, float):
            ftype = T_DOUBLE
        else:
            ftype = T_STRING
    out = struct.pack("<BB", ftype, len(k)) + k
    if ftype == T_STRING:
        v = _b(value)
        return out + struct.pack("<I", len(v)) + v
    if ftype == T_INT64:
        return out + struct.pack("<q", value)
    if ftype == T_DOUBLE:
        return out + struct.pack("<d", value)
    if ftype == T_BOOL:
        return out + struct.pack("<B", value)
    return out + _b(value)  # an unknown type: raw bytes, for malformed frames


def encode_frame(message, fields=(), level=2, time_ns=None, flags=0, dropped=0):
    """A version-1 frame. fields: (key, value) or (key, value, type) tuples, or a dict."""
    if isinstance(fields, dict):
        fields = list(fields.items())
    msg = _b(message)
    body = b"".join(encode_field(*f) for f in fields)
    if time_ns is None:
        time_ns = time.time_ns()
    hdr = struct.pack("<2sBBHHQII", b"AG", 1, level, flags, len(fields), time_ns, dropped, len(msg))
    return hdr + msg + body


def send_frames(sock_path, frames):
    """Send each frame as one datagram, from this process (blocking when full)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.connect(sock_path)
        for fr in frames:
            s.send(fr)


def send_stream(sock_path, frames):
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.connect(sock_path)
        s.sendall(b"".join(struct.pack("<I", len(fr)) + fr for fr in frames))


def read_reply(s):
    """The first line agentd's control socket answers on s, parsed."""
    buf = b""
    while b"\n" not in buf:
        d = s.recv(1 << 16)
        if not d:
            break
        buf += d
    return json.loads(buf.split(b"\n", 1)[0])


def ctl_request(path, obj, timeout=10):
    """One request on the control socket; the first reply line, parsed."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout * SCALE)
        s.connect(path)
        s.sendall((json.dumps(obj) + "\n").encode())
        return read_reply(s)


def _need(path, what):
    if not os.access(path, os.X_OK):
        raise AssertionError(f"{what} not built: {path} (run make)")


def agent_log(sock, message, level=None, service=None, fields=None, json_fields=None, check=True):
    """Run agent-log; fields: {k: str}, json_fields: {k: python value, sent as JSON}."""
    _need(AGENT_LOG, "agent-log")
    argv = [AGENT_LOG, "-S", sock]
    if level is not None:
        argv += ["-p", str(level)]
    if service is not None:
        argv += ["-t", service]
    for k, v in (fields or {}).items():
        argv += ["-f", f"{k}={v}"]
    for k, v in (json_fields or {}).items():
        argv += ["-j", f"{k}={json.dumps(v)}"]
    argv.append(message)
    return subprocess.run(argv, check=check, capture_output=True, text=True, timeout=30 * SCALE)


def agent_flood(sock, count, procs=1, rate=None, prefix="flood", drop=False, timeout=120):
    """Run agent-flood; returns (sent, dropped) totals."""
    _need(AGENT_FLOOD, "agent-flood")
    argv = [AGENT_FLOOD, "-S", sock, "-n", str(count), "-P", str(procs), "-p", prefix]
    if rate:
        argv += ["-r", str(rate)]
    if drop:
        argv.append("-d")
    r = subprocess.run(argv, check=True, capture_output=True, text=True, timeout=timeout * SCALE)
    words = r.stdout.split()
    assert words[:1] == ["sent"] and words[2:3] == ["dropped"], f"agent-flood said: {r.stdout!r} {r.stderr!r}"
    return int(words[1]), int(words[3])


def flood_trace_id(proc, seq):
    """The trace_id agent-flood puts on record (proc, seq)."""
    return f"{proc:08x}{seq:08x}{(proc * 1000003 + seq) * 2654435761 % (1 << 64):016x}"


def wait_count(pg, n, timeout=15.0, where="true", settle=0.0):
    """Wait until exactly n rows match; then, after settle seconds, check it is still n."""
    last = [None]

    def done():
        last[0] = pg.count(where)
        assert last[0] <= n, f"{last[0]} rows where {where}, more than the {n} sent"
        return last[0] == n
    try:
        wait_for(done, timeout, interval=0.1, what=f"{n} rows where {where}")
    except AssertionError as e:
        raise AssertionError(f"{e} (last count {last[0]})") from None
    if settle:
        time.sleep(settle)
        got = pg.count(where)
        assert got == n, f"{got} rows where {where} after settling, expected {n} (duplicates?)"


def comm():
    """This process's name as the kernel reports it (what agentd stamps as metadata.process)."""
    with open("/proc/self/comm") as f:
        return f.read().strip()
