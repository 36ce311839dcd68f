"""Limits held over a long outage (SOAK=1 only; `make soak`).

The upstream is unreachable for SOAK_SECONDS (default 600) while agent-flood
sends SOAK_RATE (default 10,000) records/s. agentd's RSS must stay within its
configured memory bound ([queue] max_bytes) plus SOAK_RSS_MARGIN_MB (default
64 MiB: code, libraries, libcurl and the batch being encoded), and the spool
within its [spool] max_bytes (plus one segment being written). Then the
upstream comes back and delivery resumes by itself. The figures are printed
and, with SOAK_REPORT=FILE, written there as JSON.
"""
import json
import os
import subprocess
import time

import pytest

import harness
from harness import wait_for

pytestmark = pytest.mark.skipif(os.environ.get("SOAK") != "1", reason="long run: SOAK=1 (make soak)")

MiB = 1024 * 1024
SECONDS = int(os.environ.get("SOAK_SECONDS", "600"))
RATE = int(os.environ.get("SOAK_RATE", "10000"))
QUEUE_MAX_BYTES = int(os.environ.get("SOAK_QUEUE_MAX_MB", "32")) * MiB
SPOOL_MAX_BYTES = int(os.environ.get("SOAK_SPOOL_MAX_MB", "256")) * MiB
SEGMENT_BYTES = 8 * MiB
RSS_MARGIN = int(os.environ.get("SOAK_RSS_MARGIN_MB", "64")) * MiB


def proc_status(pid):
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "VmHWM", "Threads"):
                out[k] = int(v.split()[0]) * (1024 if k != "Threads" else 1)
    return out


def ctl_status(a):
    return harness.ctl_request(a.ctl, {"cmd": "status"}, timeout=30)


def test_long_outage_at_rate_holds_memory_and_spool_bounds(agentd, receiver, pg, workdir):
    if harness.WRAPPER:
        pytest.skip("RSS is measured on agentd itself: no AGENTD_WRAPPER")
    dead = f"http://127.0.0.1:{harness.free_port()}/logs"
    a = agentd({
        "upstream": {"url": dead, "connect_timeout_ms": 500, "timeout_ms": 2000},
        "retry": {"initial_backoff_ms": 500, "max_backoff_ms": 5000, "max_retries": 2},
        "queue": {"max_bytes": f"{QUEUE_MAX_BYTES // MiB}M"},
        "spool": {"max_bytes": f"{SPOOL_MAX_BYTES // MiB}M", "segment_bytes": f"{SEGMENT_BYTES // MiB}M"},
    })
    pid = a.proc.pid
    total = RATE * SECONDS
    flood = subprocess.Popen([harness.AGENT_FLOOD, "-S", a.sock, "-n", str(total), "-r", str(RATE), "-p", "soak"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    t0 = time.monotonic()
    samples = []
    max_rss = max_spool = 0
    try:
        while flood.poll() is None:
            time.sleep(1)
            assert a.alive(), f"agentd died during the outage:\n{a.stderr()[-4000:]}"
            ps = proc_status(pid)
            sp = a.spool_bytes()
            max_rss = max(max_rss, ps["VmRSS"])
            max_spool = max(max_spool, sp)
            el = time.monotonic() - t0
            if not samples or el - samples[-1]["t"] >= 10:
                st = ctl_status(a)
                samples.append({"t": round(el, 1), "rss_mib": round(ps["VmRSS"] / MiB, 1),
                                "spool_mib": round(sp / MiB, 1), "received": st["received"],
                                "queued_records": st["queued"]["records"],
                                "queued_mib": round(st["queued"]["bytes"] / MiB, 1),
                                "spooled": st["spooled"], "dropped": st["dropped"]["by_reason"],
                                "upstream": st["upstream"]["state"]})
                print("soak", json.dumps(samples[-1]), flush=True)
            assert el < SECONDS * 1.5 + 60, "the sender fell far behind its rate"
    finally:
        if flood.poll() is None:
            flood.kill()
        out, err = flood.communicate()
    elapsed = time.monotonic() - t0
    assert flood.returncode == 0, err
    words = out.split()
    sent, shim_dropped = int(words[1]), int(words[3])
    st = ctl_status(a)
    hwm = proc_status(pid)["VmHWM"]
    report = {
        "seconds": round(elapsed, 1), "target_rate": RATE, "achieved_rate": round(sent / elapsed),
        "sent": sent, "shim_dropped": shim_dropped, "received": st["received"], "spooled": st["spooled"],
        "dropped": st["dropped"], "malformed": st["malformed"]["total"],
        "queue_max_bytes_mib": QUEUE_MAX_BYTES / MiB, "rss_margin_mib": RSS_MARGIN / MiB,
        "max_rss_mib": round(max_rss / MiB, 1), "vm_hwm_mib": round(hwm / MiB, 1),
        "spool_max_bytes_mib": SPOOL_MAX_BYTES / MiB, "max_spool_mib": round(max_spool / MiB, 1),
        "spool": st["spool"], "samples": samples,
    }
    # the upstream comes back: delivery resumes by itself
    a.write_config({"upstream": {"url": receiver.url}})
    a.signal(harness.signal.SIGHUP)
    t1 = time.monotonic()
    wait_for(lambda: pg.count() >= 10_000, 120, interval=1, what="delivery to resume after the outage")
    report["resume_s"] = round(time.monotonic() - t1, 1)
    print("soak report", json.dumps(report, indent=1), flush=True)
    if os.environ.get("SOAK_REPORT"):
        with open(os.environ["SOAK_REPORT"], "w") as f:
            json.dump(report, f, indent=1)

    assert sent == total and shim_dropped == 0
    assert st["received"] == sent
    assert sent / elapsed >= 0.9 * RATE, f"only {sent / elapsed:.0f} records/s"
    assert max_rss <= QUEUE_MAX_BYTES + RSS_MARGIN, \
        f"RSS {max_rss / MiB:.1f} MiB above the bound {QUEUE_MAX_BYTES / MiB:.0f} + {RSS_MARGIN / MiB:.0f} MiB"
    assert hwm <= QUEUE_MAX_BYTES + RSS_MARGIN, f"peak RSS {hwm / MiB:.1f} MiB"
    assert max_spool <= SPOOL_MAX_BYTES + SEGMENT_BYTES, f"spool {max_spool / MiB:.1f} MiB"
    # every record is accounted for: in memory, in the spool, or dropped and counted
    spool_records = st["spool"]["records"] if st["spool"] else 0
    dropped = st["dropped"]["total"]
    assert st["queued"]["records"] + spool_records + dropped + st["delivered"] >= sent - 1000, st
    assert a.alive()
