#!/usr/bin/env python3
"""Cost per call and loss of agentlog.Client against a local reader.

    python3 libagent/python/bench.py [--seconds 2] [--rates 5000,20000,50000]
                                     [--socket PATH] [--json]

A reader process binds a datagram socket and drains it (as agentd's ingest
does, without the rest of the pipeline). For each rate, one thread sends
records paced to that rate (sleeping when ahead), timing each call; the
reader counts what arrived. Prints p50 / p99 microseconds per call and the
loss (records sent but not received, and how many of those the client
counted as dropped), after the same figures for a copy of the seed client's
per-call work (the baseline of the goal).

--socket PATH sends to that socket instead (a running agentd;
tests/bench/shims_e2e.py counts what lands in PostgreSQL), and what arrived
is not known here. --json prints one JSON object with the baseline and every
run.
"""

import argparse
import inspect
import json
import multiprocessing
import os
import socket
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import agentlog  # noqa: E402


def reader(path, ready, stop, counts):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    s.bind(path)
    s.settimeout(0.05)
    ready.set()
    buf = bytearray(262144)
    n = 0
    while True:
        try:
            s.recv_into(buf)
            n += 1
        except socket.timeout:
            if stop.is_set():
                break
    counts.value = n
    s.close()


class SeedStyle:
    """The per-call work of the seed's in-process client, for a baseline in
    the same run: build a dict record, take the caller from the frame, merge
    two context variables and the defaults, append to a bounded deque."""

    def __init__(self):
        import collections
        import contextvars
        self.queue = collections.deque(maxlen=10000)
        self.ctx = (contextvars.ContextVar("request", default=None), contextvars.ContextVar("user", default=None))
        self.defaults = {"service": "bench", "environment": "test", "service_version": "v0.0.0-dev",
                         "log_type": "BACKEND"}

    def info(self, message, auto_caller=True, **kwargs):
        # the seed's convenience method: caller from two frames up, then log()
        if auto_caller:
            f = inspect.currentframe()
            if f and f.f_back:
                kwargs.setdefault("function_name", f.f_back.f_code.co_name)
                kwargs.setdefault("file_path", f.f_back.f_code.co_filename)
        self._adjusted("INFO", message, auto_caller, **kwargs)

    def _adjusted(self, level, message, auto_caller, **kwargs):
        self.log(level, message, auto_caller=False, **kwargs)

    def log(self, level, message, auto_caller=True, **kwargs):
        e = {"level": level, "message": message, "created_at": time.time(), **kwargs}
        for var in self.ctx:
            c = var.get()
            if c:
                for k, v in c.items():
                    e.setdefault(k, v)
        for k, v in self.defaults.items():
            e.setdefault(k, v)
        self.queue.append(e)


def baseline(n=100000):
    s = SeedStyle()
    pc = time.perf_counter_ns
    lat = [0] * n
    for i in range(n):
        t0 = pc()
        s.info("request handled", user_id="u-42", path="/api/pay", status=200, ms=12.5)
        lat[i] = pc() - t0
    lat.sort()
    return lat[n // 2] / 1000, lat[int(n * 0.99)] / 1000


def run(rate, seconds, path, ctx, external=False):
    if not external:
        ready, stop = ctx.Event(), ctx.Event()
        counts = ctx.Value("q", 0)
        p = ctx.Process(target=reader, args=(path, ready, stop, counts))
        p.start()
        ready.wait(5)
    client = agentlog.Client(socket_path=path, service="bench", environment="test")
    total = int(rate * seconds)
    lat = [0] * total
    pc = time.perf_counter_ns
    interval = 1e9 / rate
    start = pc()
    sleep = time.sleep
    for i in range(total):
        # Paced by sleeping, not spinning: the process leaves the CPU to agentd
        # between short bursts (of a few records at high rates), as an
        # application does.
        ahead = start + i * interval - pc()
        if ahead > 0:
            sleep(ahead / 1e9)
        t0 = pc()
        client.info("request handled", user_id="u-42", path="/api/pay", status=200, ms=12.5)
        lat[i] = pc() - t0
    elapsed = (pc() - start) / 1e9
    dropped = client.dropped_total
    client.close()
    lat.sort()
    got = None
    if not external:
        time.sleep(0.3)
        stop.set()
        p.join(10)
        os.unlink(path)
        got = counts.value
    return {
        "rate": rate, "sent": total, "received": got, "elapsed": elapsed,
        "p50": lat[total // 2] / 1000, "p99": lat[int(total * 0.99)] / 1000,
        "loss": None if got is None else 1 - got / total, "dropped": dropped,
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--rates", default="5000,20000,50000")
    ap.add_argument("--socket", help="send to this datagram socket (a running agentd) instead of a local reader")
    ap.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    args = ap.parse_args()
    ctx = multiprocessing.get_context("fork")
    rates = [int(r) for r in args.rates.split(",")]
    b50, b99 = baseline()
    if args.json:
        runs = [run(rate, args.seconds, args.socket, ctx, external=True) if args.socket else None
                for rate in rates]
        if not args.socket:
            d = tempfile.mkdtemp(prefix="agentlog-bench-")
            runs = [run(rate, args.seconds, os.path.join(d, "ingest.sock"), ctx) for rate in rates]
            os.rmdir(d)
        print(json.dumps({"python": sys.version.split()[0], "baseline_p50": b50, "baseline_p99": b99,
                          "runs": runs}))
        return
    where = args.socket or "a draining reader"
    print("agentlog (Python %s) against %s, %.1f s per rate" % (sys.version.split()[0], where, args.seconds))
    try:
        with open("/proc/sys/net/unix/max_dgram_qlen") as f:
            print("net.unix.max_dgram_qlen = %s (datagrams a receiver can have queued)" % f.read().strip())
    except OSError:
        pass
    print("baseline, seed-style in-process enqueue: p50 %.2f us, p99 %.2f us (goal: p50 <= %.2f us)"
          % (b50, b99, 1.25 * b50))
    print("%8s %9s %9s %9s %9s %8s" % ("rate/s", "sent", "p50 us", "p99 us", "loss", "dropped"))
    d = None if args.socket else tempfile.mkdtemp(prefix="agentlog-bench-")
    for rate in rates:
        if args.socket:
            r = run(rate, args.seconds, args.socket, ctx, external=True)
        else:
            r = run(rate, args.seconds, os.path.join(d, "ingest.sock"), ctx)
        loss = "?" if r["loss"] is None else "%.2f%%" % (100 * r["loss"])
        print("%8d %9d %9.2f %9.2f %9s %8d" % (r["rate"], r["sent"], r["p50"], r["p99"], loss, r["dropped"]))
        if r["elapsed"] > args.seconds * 1.1:
            print("         (could only reach %.0f/s)" % (r["sent"] / r["elapsed"]))
    if d:
        os.rmdir(d)

if __name__ == "__main__":
    main()
