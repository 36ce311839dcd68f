"""Failed uploads are retried, honour Retry-After, spool after the last retry and
isolate a poison record; nothing is lost."""
import json
import os
import subprocess

import pytest

import harness

from harness import agent_flood, encode_frame, send_frames, wait_count

FAST_RETRY = {"retry": {"initial_backoff_ms": 100, "max_backoff_ms": 1000}}


def test_two_503s_then_success_delivers_everything(agentd, receiver, pg):
    receiver.fail(2, status=503)
    a = agentd(FAST_RETRY)
    agent_flood(a.sock, 50)
    wait_count(pg, 50, settle=0.5)
    reqs = receiver.requests()
    assert [q["status"] for q in reqs] == [503, 503, 200], reqs
    assert [q["records"] for q in reqs] == [50, 50, 50], "the same batch is retried"
    assert "retry 2/" in a.stderr().lower(), "retries are logged"
    st = json.loads(subprocess.run([os.path.join(harness.BUILD, "bin", "agentctl"), "-s", a.ctl, "status", "--json"], capture_output=True,
                                   text=True, check=True).stdout)
    assert st["retries"] == 2 and st["delivered"] == 50, st


@pytest.mark.parametrize("status", [503, 429])
def test_retry_after_is_honoured(agentd, receiver, pg, status):
    receiver.fail(1, status=status, retry_after="2")
    a = agentd(FAST_RETRY)
    send_frames(a.sock, [encode_frame("after a pause")])
    wait_count(pg, 1, timeout=10)
    first, second = receiver.requests()
    gap = second["time"] - first["time"]
    assert 1.9 <= gap <= 2.5 + 2 * harness.SCALE, f"retried after {gap:.2f} s, Retry-After said 2"


def test_after_max_retries_the_batch_is_spooled_and_delivered_later(agentd, receiver, pg):
    receiver.fail(5, status=503)
    a = agentd({"retry": {"max_retries": 1, "initial_backoff_ms": 100, "max_backoff_ms": 500}})
    agent_flood(a.sock, 40)
    wait_count(pg, 40, timeout=30, settle=1.0)
    statuses = [q["status"] for q in receiver.requests()]
    assert statuses[:5] == [503] * 5 and set(statuses[5:]) == {200}


def test_a_poison_record_is_isolated_and_the_rest_delivered(agentd, receiver, pg, workdir):
    receiver.refuse("^poison")
    a = agentd(FAST_RETRY)
    frames = [encode_frame(f"good {i}") for i in range(15)]
    frames.append(encode_frame("poison pill"))
    frames += [encode_frame(f"good {i}") for i in range(15, 30)]
    send_frames(a.sock, frames)
    wait_count(pg, 30, where="message LIKE 'good %'", timeout=20, settle=1.0)
    assert pg.count() == 30
    found = []
    for root, _, files in os.walk(workdir):
        for f in files:
            p = os.path.join(root, f)
            try:
                with open(p, "rb") as fh:
                    if b"poison pill" in fh.read():
                        found.append(p)
            except OSError:
                pass
    assert found, "the poison record is kept in a dead-letter file"


def test_upstream_down_then_reload_to_a_working_url_loses_nothing(agentd, receiver, pg):
    dead = f"http://127.0.0.1:{harness.free_port()}/logs"
    a = agentd({"upstream": {"url": dead}, **FAST_RETRY})
    agent_flood(a.sock, 200)
    harness.wait_for(lambda: "upload failed" in a.stderr() or a.spool_bytes() > 0, 10,
                     what="agentd to notice the upstream is down")
    assert pg.count() == 0
    a.write_config({"upstream": {"url": receiver.url}})
    a.signal(harness.signal.SIGHUP)
    wait_count(pg, 200, timeout=30, settle=1.0)
    assert a.alive()
