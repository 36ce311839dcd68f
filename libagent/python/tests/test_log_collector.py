"""log_collector.AsyncLogClient: the seed client's surface, unchanged."""

import asyncio
import sys
import time
import warnings

import pytest

import agentlog
import log_collector
from log_collector import AsyncLogClient
from log_collector import async_client


@pytest.fixture
def seed(receiver, clean_env):
    clean_env.setattr(async_client, "_warned", False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        c = AsyncLogClient(service="payment-api", socket_path=receiver.path)
    yield c
    c.close()


def test_constructor_takes_seed_arguments_with_one_warning(receiver, clean_env):
    clean_env.setattr(async_client, "_warned", False)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        c = AsyncLogClient("http://localhost:8000", service="s", environment="production",
                           service_version="v1", log_type="WORKER", batch_size=10, flush_interval=0.5,
                           max_queue_size=100, enable_compression=False, max_retries=1,
                           enable_global_error_handler=False, socket_path=receiver.path)
        c2 = AsyncLogClient("http://other", batch_size=5, socket_path=receiver.path)
    assert len(w) == 1 and "batch_size" in str(w[0].message) and "server_url" in str(w[0].message)
    c.info("x")
    f = receiver.recv().f
    assert (f["service"], f["environment"], f["service_version"], f["log_type"]) == ("s", "production", "v1", "WORKER")
    c.close()
    c2.close()
    assert log_collector.__all__ == ["AsyncLogClient"]


def test_levels_and_auto_caller(seed, receiver):
    for name, lv in (("trace", 0), ("debug", 1), ("info", 2), ("warn", 3), ("error", 4), ("fatal", 5)):
        getattr(seed, name)("m", order=lv)
        rec = receiver.recv()
        assert rec["level"] == lv and rec.f["order"] == lv
        assert rec.f["function_name"] == "test_levels_and_auto_caller" and rec.f["file_path"] == __file__
    seed.info("no caller", auto_caller=False)
    rec = receiver.recv()
    assert "function_name" not in rec.f and "auto_caller" not in rec.f
    seed.log("WARNING", "alias", auto_caller=True, extra_field="kept")
    rec = receiver.recv()
    assert rec["level"] == 3 and rec.f["extra_field"] == "kept"
    assert rec.f["function_name"] == "test_levels_and_auto_caller"


def test_timers(seed, receiver):
    start = seed.start_timer()
    time.sleep(0.01)
    seed.end_timer(start, "INFO", "done", rows=3)
    rec = receiver.recv()
    assert rec.f["duration_ms"] >= 9 and rec.f["rows"] == 3
    with seed.timer("block", level="DEBUG"):
        pass
    rec = receiver.recv()
    assert rec["level"] == 1 and rec.f["duration_ms"] >= 0

    @seed.measure("measured")
    def work():
        return 5

    assert work() == 5
    rec = receiver.recv()
    assert rec["message"] == "measured" and rec.f["function_name"] == "work"


def test_error_with_trace(seed, receiver):
    try:
        {}["k"]
    except KeyError as e:
        seed.error_with_trace("lookup failed", exception=e, order_id=9)
    rec = receiver.recv()
    assert rec["level"] == 4 and rec.f["error_type"] == "KeyError" and rec.f["order_id"] == 9
    assert "KeyError" in rec.f["stack_trace"]


def test_contexts(seed, receiver):
    with AsyncLogClient.user_context(tenant_id="t1", user_id="u0"):
        with AsyncLogClient.user_context(user_id="u1"):
            assert AsyncLogClient.get_user_context() == {"tenant_id": "t1", "user_id": "u1"}
            seed.info("nested")
        seed.info("outer")
    seed.info("after")
    nested, outer, after = receiver.recv().f, receiver.recv().f, receiver.recv().f
    assert (nested["tenant_id"], nested["user_id"]) == ("t1", "u1")
    assert outer["user_id"] == "u0" and "tenant_id" not in after

    AsyncLogClient.set_request_context(path="/pay", method="POST", ip="10.0.0.1")
    try:
        assert AsyncLogClient.get_request_context()["path"] == "/pay"
        with AsyncLogClient.user_context(path="/ignored", user_id="u2"):
            seed.info("req", method="GET")
        f = receiver.recv().f
        assert (f["path"], f["method"], f["ip"], f["user_id"]) == ("/pay", "GET", "10.0.0.1", "u2")
    finally:
        AsyncLogClient.clear_request_context()
    assert AsyncLogClient.get_request_context() is None
    seed.info("cleared")
    assert "path" not in receiver.recv().f

    AsyncLogClient.set_user_context(user_id="u3")
    seed.info("set")
    AsyncLogClient.clear_user_context()
    seed.info("unset")
    assert receiver.recv().f["user_id"] == "u3" and "user_id" not in receiver.recv().f

    with agentlog.Client.context(trace_id="tr"):
        seed.info("agentlog context too")
    assert receiver.recv().f["trace_id"] == "tr"


def test_flush_and_close_sync_or_awaited(seed, receiver, clean_env):
    assert seed.flush() is None
    seed.close()
    c = AsyncLogClient(socket_path=receiver.path, enable_global_error_handler=True)
    hooked = sys.excepthook

    async def main():
        await c.close()

    asyncio.run(main())
    assert sys.excepthook is not hooked


def test_global_handler_logs_uncaught(receiver, clean_env):
    prev = sys.excepthook
    seen = []
    sys.excepthook = lambda *a: seen.append(a[0])
    try:
        c = AsyncLogClient(socket_path=receiver.path, enable_global_error_handler=True)
        try:
            raise OSError("disk")
        except OSError:
            sys.excepthook(*sys.exc_info())
        rec = receiver.recv()
        assert rec["level"] == 4 and rec.f["error_type"] == "OSError" and seen == [OSError]
        c.close()
    finally:
        sys.excepthook = prev
