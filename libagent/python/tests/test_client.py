"""agentlog.Client over a real datagram socket."""

import asyncio
import logging
import os
import sys
import threading
import time

import pytest

import agentlog


def test_record_fields_types_and_caller(client, receiver):
    before = time.time_ns()
    client.info("paid", user_id="u-42", amount=1250, ratio=0.25, ok=True); line = sys._getframe().f_lineno
    rec = receiver.recv()
    assert rec["level"] == agentlog.INFO and rec["flags"] == 0 and rec["dropped"] == 0
    assert rec["message"] == "paid"
    assert before <= rec["time_ns"] <= time.time_ns()
    f = rec.f
    assert f["user_id"] == "u-42" and f["amount"] == 1250 and f["ratio"] == 0.25 and f["ok"] is True
    assert rec.types()["amount"] == "int64" and rec.types()["ratio"] == "double" and rec.types()["ok"] == "bool"
    assert f["function_name"] == "test_record_fields_types_and_caller"
    assert f["file_path"] == __file__
    assert f["line"] == line


@pytest.mark.parametrize("method,level", [("trace", 0), ("debug", 1), ("info", 2), ("warn", 3),
                                          ("warning", 3), ("error", 4), ("fatal", 5), ("critical", 5)])
def test_level_methods(client, receiver, method, level):
    getattr(client, method)("m")
    assert receiver.recv()["level"] == level


@pytest.mark.parametrize("given,level", [("WARNING", 3), ("crit", 5), ("notice", 2), ("err", 4), ("3", 4), (1, 1)])
def test_log_accepts_aliases(client, receiver, given, level):
    client.log(given, "m")
    rec = receiver.recv()
    assert rec["level"] == level and "level" not in rec.f


def test_unknown_level_kept_as_field(client, receiver):
    client.log("verbose", "m")
    rec = receiver.recv()
    assert rec["level"] == agentlog.INFO and rec.f["level"] == "verbose"


def test_value_types(client, receiver):
    class Thing:
        def __str__(self):
            return "thing!"

    client.info("types", big=1 << 70, neg=-5, none=None, d={"a": [1, 2]}, raw=b"\xff\x00", obj=Thing(),
                lone="a\ud800b", flag=False, nan=float("nan"))
    rec = receiver.recv()
    f, t = rec.f, rec.types()
    assert f["big"] == str(1 << 70) and t["big"] == "string"
    assert f["neg"] == -5 and t["neg"] == "int64"
    assert "none" not in f
    assert f["d"] == '{"a": [1, 2]}'
    assert f["raw"] == b"\xff\x00"
    assert f["obj"] == "thing!"
    assert f["lone"] == "a\ud800b"  # sent as is; agentd replaces it with U+FFFD
    assert f["flag"] is False and t["flag"] == "bool"
    assert f["nan"] != f["nan"]


def test_defaults_from_environment_and_override(receiver, clean_env):
    clean_env.setenv("SERVICE_NAME", "payments")
    clean_env.setenv("ENVIRONMENT", "staging")
    clean_env.setenv("SERVICE_VERSION", "v1.2.3")
    clean_env.setenv("LOG_TYPE", "WORKER")
    clean_env.setenv("AGENT_SOCKET", receiver.path)
    with agentlog.Client() as c:
        c.info("a")
        c.info("b", service="other", function_name="given")
    a, b = receiver.recv().f, receiver.recv().f
    assert (a["service"], a["environment"], a["service_version"], a["log_type"]) == \
        ("payments", "staging", "v1.2.3", "WORKER")
    assert b["service"] == "other" and b["environment"] == "staging" and b["function_name"] == "given"
    assert b["file_path"] == __file__


def test_unset_defaults_are_left_out(client, receiver):
    client.info("x")
    f = receiver.recv().f
    assert not {"service", "environment", "service_version", "log_type"} & set(f)


def test_no_duplicate_keys(receiver, clean_env):
    with agentlog.Client(socket_path=receiver.path, service="s") as c:
        c.info("x", service="t", line=7)
    keys = [k for k, _, _ in receiver.recv()["fields"]]
    assert len(keys) == len(set(keys))


def test_timer(client, receiver):
    with client.timer("query", level="DEBUG", table="users"):
        time.sleep(0.01)
    rec = receiver.recv()
    assert rec["level"] == 1 and rec["message"] == "query" and rec.f["table"] == "users"
    assert 9 <= rec.f["duration_ms"] < 1000
    assert rec.f["function_name"] == "test_timer"


def test_measure(client, receiver):
    @client.measure("pay")
    def pay(x):
        return x * 2

    @client.measure
    def boom():
        raise KeyError("nope")

    assert pay(2) == 4
    rec = receiver.recv()
    assert rec["message"] == "pay" and rec.f["function_name"] == "pay" and rec.f["duration_ms"] >= 0
    assert rec.f["file_path"] == __file__
    with pytest.raises(KeyError):
        boom()
    rec = receiver.recv()
    assert rec["level"] == agentlog.ERROR and rec["message"] == "boom failed"
    assert rec.f["error_type"] == "KeyError" and "nope" in rec.f["stack_trace"]
    assert rec.f["function_name"] == "boom"


def _fail():
    raise ValueError("bad value")


def test_error_with_trace(client, receiver):
    try:
        _fail()
    except ValueError:
        client.error_with_trace("failed", order=7)
    rec = receiver.recv()
    assert rec["level"] == agentlog.ERROR and rec.f["error_type"] == "ValueError"
    assert "bad value" in rec.f["stack_trace"] and rec.f["function_name"] == "_fail" and rec.f["order"] == 7
    client.error_with_trace("explicit", exception=RuntimeError("x"))
    rec = receiver.recv()
    assert rec.f["error_type"] == "RuntimeError"
    client.error_with_trace("no exception")
    rec = receiver.recv()
    assert "error_type" not in rec.f and "test_error_with_trace" in rec.f["stack_trace"]


def test_context_nests_and_follows_contextvars(client, receiver):
    with client.context(trace_id="t1", user_id="u1"):
        with agentlog.Client.context(user_id="u2", session_id="s"):
            client.info("inner", session_id="given")
        client.info("outer")
    client.info("none")
    inner, outer, none = receiver.recv().f, receiver.recv().f, receiver.recv().f
    assert (inner["trace_id"], inner["user_id"], inner["session_id"]) == ("t1", "u2", "given")
    assert outer["user_id"] == "u1" and "session_id" not in outer
    assert "trace_id" not in none

    async def task(name):
        with client.context(trace_id=name):
            await asyncio.sleep(0.01)
            client.info(name)

    async def main():
        await asyncio.gather(task("a"), task("b"))

    asyncio.run(main())
    got = {r.f["trace_id"] for r in (receiver.recv(), receiver.recv())}
    assert got == {"a", "b"}

    seen = []
    with client.context(trace_id="main"):
        t = threading.Thread(target=lambda: seen.append(agentlog._context.get()))
        t.start()
        t.join()
    assert seen == [None]  # a new thread starts with an empty context


def test_agent_handler(receiver, clean_env):
    client = agentlog.Client(socket_path=receiver.path, service="svc")
    handler = agentlog.AgentHandler(client)
    logger = logging.getLogger("agentlog.test")
    logger.propagate = False
    logger.setLevel(1)
    logger.addHandler(handler)
    try:
        for lv in (5, logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR, logging.CRITICAL, 25):
            logger.log(lv, "at %s", lv)
        levels = [receiver.recv()["level"] for _ in range(7)]
        assert levels == [0, 1, 2, 3, 4, 5, 2]
        logger.info("with extra", extra={"user_id": "u-1", "count": 3}); line = sys._getframe().f_lineno
        rec = receiver.recv()
        f = rec.f
        assert rec["message"] == "with extra" and f["user_id"] == "u-1" and f["count"] == 3
        assert f["logger"] == "agentlog.test" and f["function_name"] == "test_agent_handler"
        assert f["file_path"] == __file__ and f["line"] == line and f["service"] == "svc"
        try:
            _fail()
        except ValueError:
            logger.exception("caught")
        rec = receiver.recv()
        assert rec["level"] == 4 and rec.f["error_type"] == "ValueError" and "bad value" in rec.f["stack_trace"]
    finally:
        logger.removeHandler(handler)
        handler.close()
        client.close()


def test_global_handlers_chain_and_restore(receiver, clean_env):
    calls = []
    prev_sys, prev_thr = sys.excepthook, threading.excepthook
    sys.excepthook = lambda *a: calls.append(("sys", a[0]))
    threading.excepthook = lambda args: calls.append(("thread", args.exc_type))
    try:
        mine_sys, mine_thr = sys.excepthook, threading.excepthook
        c = agentlog.Client(socket_path=receiver.path, enable_global_error_handler=True)
        assert sys.excepthook is not mine_sys and threading.excepthook is not mine_thr
        try:
            _fail()
        except ValueError:
            sys.excepthook(*sys.exc_info())
        rec = receiver.recv()
        assert rec["level"] == agentlog.ERROR and rec.f["error_type"] == "ValueError"
        assert "bad value" in rec.f["stack_trace"] and rec["message"].startswith("Uncaught exception")
        t = threading.Thread(target=_fail, name="worker-1")
        t.start()
        t.join()
        rec = receiver.recv()
        assert rec.f["error_type"] == "ValueError" and "worker-1" in rec["message"]
        assert calls == [("sys", ValueError), ("thread", ValueError)]
        c.close()
        assert sys.excepthook is mine_sys and threading.excepthook is mine_thr
    finally:
        sys.excepthook, threading.excepthook = prev_sys, prev_thr


def test_global_handler_from_environment(receiver, clean_env):
    clean_env.setenv("ENABLE_GLOBAL_ERROR_HANDLER", "true")
    before = sys.excepthook
    c = agentlog.Client(socket_path=receiver.path)
    assert sys.excepthook is not before
    c.close()
    assert sys.excepthook is before


def test_uncaught_exception_in_subprocess(receiver, clean_env):
    import subprocess
    code = ("import agentlog; agentlog.Client(socket_path=%r, enable_global_error_handler=True)\n"
            "def crash():\n    raise ZeroDivisionError('boom')\ncrash()\n" % receiver.path)
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    p = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, timeout=30)
    assert p.returncode == 1 and b"ZeroDivisionError" in p.stderr
    rec = receiver.recv()
    assert rec.f["error_type"] == "ZeroDivisionError" and rec.f["function_name"] == "crash"


def test_drops_counted_when_nobody_reads(client, receiver):
    sent = 0
    while client.dropped == 0 and sent < 100000:
        client.info("fill", n=sent)
        sent += 1
    assert client.dropped == 1
    for _ in range(5):
        client.info("more")
    assert client.dropped == 6 and client.dropped_total == 6
    received = receiver.pending()
    assert len(received) == sent - 1
    client.info("after")
    rec = receiver.recv()
    assert rec["message"] == "after" and rec["dropped"] == 6
    assert client.dropped == 0 and client.dropped_total == 6
    client.info("next")
    assert receiver.recv()["dropped"] == 0


def test_daemon_absent_then_restarted(receiver, clean_env):
    c = agentlog.Client(socket_path=receiver.path)
    c.info("one")
    assert receiver.recv()["message"] == "one"
    receiver.close()  # the daemon stops: socket closed and removed
    c.info("lost 1")
    c.info("lost 2")
    assert c.dropped == 2
    receiver.open()  # restarted on a new socket at the same path
    time.sleep(agentlog.RECONNECT_INTERVAL + 0.02)
    c.info("back")
    rec = receiver.recv()
    assert rec["message"] == "back" and rec["dropped"] == 2
    c.close()


def test_daemon_not_running_at_start(tmp_path, clean_env):
    from conftest import Receiver
    path = str(tmp_path / "later.sock")
    c = agentlog.Client(socket_path=path)
    c.info("nobody")
    assert c.dropped == 1
    r = Receiver(path)
    try:
        time.sleep(agentlog.RECONNECT_INTERVAL + 0.02)
        c.info("now")
        rec = r.recv()
        assert rec["message"] == "now" and rec["dropped"] == 1
    finally:
        c.close()
        r.close()


def test_reconnect_is_rate_limited(tmp_path, clean_env, monkeypatch):
    c = agentlog.Client(socket_path=str(tmp_path / "absent.sock"))
    attempts = []
    real = c._connect
    monkeypatch.setattr(c, "_connect", lambda: attempts.append(1) or real())
    for _ in range(1000):
        c.info("x")
    assert c.dropped == 1000 and len(attempts) <= 1
    c.close()


def test_large_record_truncated_and_flagged(client, receiver):
    client.info("big", blob="z" * 200000, small="kept")
    rec = receiver.recv()
    assert rec["flags"] == 1 and "blob" not in rec.f and rec.f["small"] == "kept"
    assert rec.f["function_name"] == "test_large_record_truncated_and_flagged"
    client.info("m" * 140000)
    rec = receiver.recv()
    assert rec["flags"] == 1 and len(rec["message"]) < 131072


def test_close_counts_later_calls(client, receiver):
    client.close()
    client.info("after close")
    assert client.dropped == 1
    client.close()  # twice is fine


def test_send_buffer_raised_as_libagent_does(receiver):
    """Room for as many small datagrams in flight as agentd's queue holds."""
    import socket
    c = agentlog.Client(socket_path=receiver.path)
    try:
        got = c._sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)
        with open("/proc/sys/net/core/wmem_max") as f:
            cap = int(f.read())
        # the kernel doubles what it is given; without CAP_NET_ADMIN it caps at wmem_max
        assert got >= 2 * min(agentlog.SNDBUF_BYTES, cap)
    finally:
        c.close()
