"""SIGTERM flushes or persists everything; the next start replays; SIGHUP loses nothing."""
import signal
import subprocess
import time

import harness
from harness import agent_flood, encode_frame, send_frames, wait_count, wait_for


def test_sigterm_with_10000_queued_delivers_all_before_exit(agentd, receiver, pg):
    receiver.delay(500)  # a slow server: the records pile up in agentd
    a = agentd({"upstream": {"max_inflight": 1}, "agentd": {"shutdown_timeout_ms": 30000}})
    assert agent_flood(a.sock, 10000) == (10000, 0)
    assert pg.count() < 10000, "precondition: records are still queued when SIGTERM comes"
    assert a.stop() == 0
    assert pg.count() == 10000, "everything was delivered before agentd exited"
    assert pg.scalar("SELECT count(DISTINCT message) FROM logs") == 10000
    receiver.delay(0)

    # Nothing delivered was also kept for replay: a restart on the same spool sends nothing more.
    agentd(name="again")
    time.sleep(2)
    assert pg.count() == 10000


def test_sigterm_with_upstream_down_spools_and_the_next_start_replays_first(agentd, receiver, pg):
    receiver.fail(1000000, status=503)
    a = agentd({"agentd": {"shutdown_timeout_ms": 2000},
                "retry": {"initial_backoff_ms": 100, "max_backoff_ms": 500}})
    agent_flood(a.sock, 500, prefix="old")
    wait_for(lambda: receiver.requests(), 5, what="a first (failing) upload")
    t0 = time.monotonic()
    assert a.stop(timeout=15) == 0
    assert time.monotonic() - t0 < 2 + 3 * harness.SCALE, "exit within shutdown_timeout_ms"
    assert pg.count() == 0
    assert a.spool_bytes() > 0, "the records were persisted to the spool"

    receiver.fail(0)
    b = agentd(name="second")
    send_frames(b.sock, [encode_frame("new 0")])
    wait_count(pg, 501, timeout=20, settle=1.0)
    assert pg.count("message LIKE 'old %'") == 500
    newest_old = pg.scalar("SELECT max(id) FROM logs WHERE message LIKE 'old %'")
    assert pg.scalar("SELECT id FROM logs WHERE message = 'new 0'") > newest_old, "the spool is replayed first"


def test_sigint_is_like_sigterm(agentd, receiver, pg):
    a = agentd({"batch": {"interval_ms": 60000}})
    agent_flood(a.sock, 300)
    time.sleep(0.3)
    a.signal(signal.SIGINT)
    a.proc.wait(20 * harness.SCALE)
    assert a.stop() == 0
    assert pg.count() == 300


def test_sighup_reload_loses_no_record(agentd, receiver, pg):
    a = agentd({"batch": {"max_records": 1000}})
    flood = subprocess.Popen([harness.AGENT_FLOOD, "-S", a.sock, "-n", "4000", "-r", "4000", "-p", "hup"],
                             stdout=subprocess.PIPE, text=True)
    time.sleep(0.4)
    a.write_config({"batch": {"max_records": 50}})
    a.signal(signal.SIGHUP)
    out, _ = flood.communicate(timeout=60 * harness.SCALE)
    assert out.split() == ["sent", "4000", "dropped", "0"]
    wait_count(pg, 4000, timeout=20, settle=1.0)
    assert a.alive()

    # The new settings are in force.
    n = len(receiver.requests())
    agent_flood(a.sock, 500, prefix="after")
    wait_count(pg, 500, where="message LIKE 'after %'")
    later = receiver.requests()[n:]
    assert later and max(q["records"] for q in later) <= 50
