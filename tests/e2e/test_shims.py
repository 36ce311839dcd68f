"""The Python and Node.js shims (libagent/python, libagent/node) end to end:
shim -> agentd (datagram socket for Python, stream socket for Node) -> the
reference receiver -> PostgreSQL. Fields and their types, levels and aliases,
the helpers, the global error handlers and the seed-compatible forms, with
exact counts.

The Python shim runs in this process (imported from libagent/python) or, for
the uncaught-exception hooks, in a child /usr/bin/python3; the Node shim always
runs in a child `node` process.
"""
import decimal
import json
import logging
import os
import shutil
import subprocess
import sys
import textwrap
import time
import warnings

import pytest

from harness import PYTHON, REPO, SCALE, wait_count

PY_SHIM = os.path.join(REPO, "libagent", "python")
NODE_SHIM = os.path.join(REPO, "libagent", "node", "index.js")
sys.path.insert(0, PY_SHIM)
import agentlog  # noqa: E402
from log_collector import AsyncLogClient, async_client  # noqa: E402

ORIGIN = {"pid", "uid", "gid", "process", "host"}
TRACE_ID = "0123456789abcdef0123456789abcdef"
FAST = {"batch": {"interval_ms": 100}}  # short batches: the suite stays quick


def by_message(pg, cols="*"):
    return {r["message"]: r for r in pg.rows(f"SELECT {cols} FROM logs")}


def meta(row):
    """metadata without the origin agentd stamps on every record."""
    return {k: v for k, v in (row["metadata"] or {}).items() if k not in ORIGIN}


def run_python(code, env, where, timeout=30):
    """Run code as a script file (so that tracebacks show its lines) in a child."""
    script = os.path.join(where, "child.py")
    with open(script, "w") as f:
        f.write(textwrap.dedent(code))
    full = dict(os.environ, PYTHONPATH=PY_SHIM, **env)
    return subprocess.run([PYTHON, script], env=full, capture_output=True, text=True, timeout=timeout * SCALE)


def node_bin():
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not on PATH: the Node.js shim cannot be tested "
                    "(`make deps` installs Debian's nodejs)", pytrace=False)
    return node


def run_node(code, env, timeout=30):
    full = dict(os.environ, **env)
    full.pop("NODE_OPTIONS", None)
    return subprocess.run([node_bin(), "-e", f"const INDEX = {json.dumps(NODE_SHIM)};\n" + textwrap.dedent(code)],
                          env=full, capture_output=True, text=True, timeout=timeout * SCALE)


# ---- Python: agentlog.Client -------------------------------------------------------

def test_python_levels_aliases_fields_and_types(agentd, pg):
    a = agentd(FAST)
    log = agentlog.Client(socket_path=a.sock, service="py-svc", environment="staging",
                          service_version="v1.2.3", log_type="WORKER")
    for name in ("trace", "debug", "info", "warn", "error", "fatal"):
        getattr(log, name)(f"py {name}")
    log.log("warning", "py alias warning")
    log.log("CRIT", "py alias CRIT")
    log.log("notice", "py alias notice")
    log.log("3", "py syslog 3")
    log.log("verbose", "py unknown level")
    log.info("py typed", s="text", n=42, neg=-7, f=0.25, b=True, big=2 ** 70, obj={"a": [1, 2]}, none=None,
             raw=b"bytes", user_id="u-42", session_id="s-9", path="/api/pay", method="POST",
             action_type="click", duration_ms=12.5, trace_id=TRACE_ID)
    log.info("py given wins", service="given-svc", function_name="given_fn")
    assert log.dropped_total == 0
    log.close()
    wait_count(pg, 13, settle=0.3)

    rows = by_message(pg)
    levels = {m: r["level"] for m, r in rows.items()}
    assert levels == {"py trace": "TRACE", "py debug": "DEBUG", "py info": "INFO", "py warn": "WARN",
                      "py error": "ERROR", "py fatal": "FATAL", "py alias warning": "WARN",
                      "py alias CRIT": "FATAL", "py alias notice": "INFO", "py syslog 3": "ERROR",
                      "py unknown level": "INFO", "py typed": "INFO", "py given wins": "INFO"}
    assert meta(rows["py unknown level"])["level"] == "verbose"
    me = {"pid": os.getpid(), "uid": os.getuid(), "gid": os.getgid()}
    for m, r in rows.items():
        assert (r["environment"], r["service_version"], r["log_type"]) == ("staging", "v1.2.3", "WORKER"), m
        assert {k: r["metadata"][k] for k in me} == me, m
        if m != "py given wins":
            assert r["service"] == "py-svc", m
            assert r["function_name"] == "test_python_levels_aliases_fields_and_types", m
        assert r["file_path"] == __file__, m
        assert isinstance(r["metadata"]["line"], int), m

    r = rows["py typed"]
    assert (r["user_id"], r["session_id"], r["path"], r["method"], r["action_type"], r["trace_id"]) == \
        ("u-42", "s-9", "/api/pay", "POST", "click", TRACE_ID)
    assert r["duration_ms"] == decimal.Decimal("12.500")
    m = meta(r)
    del m["line"]
    assert m == {"s": "text", "n": 42, "neg": -7, "f": 0.25, "b": True, "big": str(2 ** 70),
                 "obj": '{"a": [1, 2]}', "raw": "bytes"}
    assert type(m["n"]) is int and type(m["f"]) is float and type(m["b"]) is bool
    r = rows["py given wins"]
    assert (r["service"], r["function_name"]) == ("given-svc", "given_fn")


def test_python_helpers_timer_measure_error_context(agentd, pg):
    a = agentd(FAST)
    log = agentlog.Client(socket_path=a.sock, service="py-helpers")
    with log.timer("py timer", level="DEBUG", rows=3):
        time.sleep(0.02)

    @log.measure("py measured")
    def measured_work():
        time.sleep(0.01)
        return 7

    @log.measure
    def measured_fails():
        raise ValueError("measured boom")

    assert measured_work() == 7
    with pytest.raises(ValueError):
        measured_fails()

    def lookup():
        return {}["missing"]
    try:
        lookup()
    except KeyError as e:
        log.error_with_trace("py error_with_trace", e, order_id="A1")
    try:
        raise ZeroDivisionError("implicit")
    except ZeroDivisionError:
        log.error_with_trace("py error_with_trace current")

    with log.context(trace_id=TRACE_ID, user_id="u-ctx", tenant="t1"):
        with log.context(user_id="u-inner", session_id="s-ctx"):
            log.info("py inner context")
        log.info("py outer context", tenant="given")
    log.info("py no context")
    log.close()
    wait_count(pg, 8, settle=0.3)

    rows = by_message(pg)
    r = rows["py timer"]
    assert r["level"] == "DEBUG" and r["duration_ms"] >= 19 and meta(r)["rows"] == 3
    r = rows["py measured"]
    assert r["duration_ms"] >= 9 and r["function_name"] == "measured_work"
    r = rows["measured_fails failed"]
    assert (r["level"], r["error_type"], r["function_name"]) == ("ERROR", "ValueError", "measured_fails")
    assert "measured boom" in r["stack_trace"] and r["duration_ms"] is not None
    r = rows["py error_with_trace"]
    assert (r["level"], r["error_type"], r["function_name"]) == ("ERROR", "KeyError", "lookup")
    assert "Traceback" in r["stack_trace"] and "lookup" in r["stack_trace"] and meta(r)["order_id"] == "A1"
    assert rows["py error_with_trace current"]["error_type"] == "ZeroDivisionError"
    r = rows["py inner context"]
    assert (r["trace_id"], r["user_id"], r["session_id"], meta(r)["tenant"]) == (TRACE_ID, "u-inner", "s-ctx", "t1")
    r = rows["py outer context"]
    assert (r["trace_id"], r["user_id"], r["session_id"], meta(r)["tenant"]) == (TRACE_ID, "u-ctx", None, "given")
    r = rows["py no context"]
    assert (r["trace_id"], r["user_id"]) == (None, None) and "tenant" not in meta(r)


def test_python_logging_handler(agentd, pg):
    a = agentd(FAST)
    handler = agentlog.AgentHandler(socket_path=a.sock, service="py-logging")
    logger = logging.getLogger("agentd.e2e.shims")
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)
    try:
        logger.debug("logging debug")
        logger.info("logging %s %d", "formatted", 5, extra={"order_id": "A1", "qty": 3, "user_id": "u-7"})
        logger.warning("logging warning")
        logger.critical("logging critical")
        try:
            int("x")
        except ValueError:
            logger.exception("logging exception")
    finally:
        logger.removeHandler(handler)
        handler.close()
    wait_count(pg, 5, settle=0.3)
    rows = by_message(pg)
    assert {m: r["level"] for m, r in rows.items()} == {
        "logging debug": "DEBUG", "logging formatted 5": "INFO", "logging warning": "WARN",
        "logging critical": "FATAL", "logging exception": "ERROR"}
    r = rows["logging formatted 5"]
    assert r["user_id"] == "u-7" and r["service"] == "py-logging"
    assert r["function_name"] == "test_python_logging_handler" and r["file_path"] == __file__
    m = meta(r)
    assert (m["order_id"], m["qty"], m["logger"]) == ("A1", 3, "agentd.e2e.shims")
    r = rows["logging exception"]
    assert r["error_type"] == "ValueError" and "invalid literal" in r["stack_trace"]


def test_python_global_handler_in_a_child_that_raises(agentd, pg):
    a = agentd(FAST)
    r = run_python("""
        import threading, agentlog
        log = agentlog.Client(service="py-crashy", enable_global_error_handler=True)
        def thread_crash():
            raise ValueError("thread went wrong")
        t = threading.Thread(target=thread_crash, name="worker-1")
        t.start()
        t.join()
        def boom():
            raise KeyError("missing-key")
        boom()
    """, {"AGENT_SOCKET": a.sock}, a.dir)
    assert r.returncode == 1, r.stderr
    # the previous hooks still ran: Python printed both tracebacks
    assert "KeyError: 'missing-key'" in r.stderr and "ValueError: thread went wrong" in r.stderr
    wait_count(pg, 2, settle=0.3)
    rows = by_message(pg)
    assert set(rows) == {"Uncaught exception: KeyError: 'missing-key'",
                         "Uncaught exception in thread worker-1: ValueError: thread went wrong"}
    main = rows["Uncaught exception: KeyError: 'missing-key'"]
    assert (main["level"], main["error_type"], main["function_name"], main["service"]) == \
        ("ERROR", "KeyError", "boom", "py-crashy")
    assert "Traceback" in main["stack_trace"] and "boom()" in main["stack_trace"]
    assert main["metadata"]["pid"] != os.getpid()
    thr = rows["Uncaught exception in thread worker-1: ValueError: thread went wrong"]
    assert (thr["level"], thr["error_type"], thr["function_name"]) == ("ERROR", "ValueError", "thread_crash")
    assert "thread went wrong" in thr["stack_trace"]


# ---- Python: log_collector.AsyncLogClient (the seed's API) -------------------------------

def test_python_seed_async_log_client(agentd, pg, monkeypatch):
    a = agentd(FAST)
    monkeypatch.setattr(async_client, "_warned", False)
    monkeypatch.setenv("AGENT_SOCKET", a.sock)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        # the seed's constructor, positionally and by name, as existing code calls it
        logger = AsyncLogClient("http://localhost:8000", service="legacy-api", environment="production",
                                service_version="v2.0.0", log_type="BACKEND", batch_size=100,
                                flush_interval=5.0, max_queue_size=10000, enable_compression=True,
                                max_retries=3, enable_global_error_handler=False)
    assert len(w) == 1 and issubclass(w[0].category, RuntimeWarning)

    logger.info("seed info", user_id="u-1", order_id="O-9", amount=1250)
    logger.log("warning", "seed log alias")
    logger.log("ERROR", "seed no caller", auto_caller=False)
    for name in ("trace", "debug", "warn", "error", "fatal"):
        getattr(logger, name)(f"seed {name}")
    start = logger.start_timer()
    time.sleep(0.02)
    logger.end_timer(start, "INFO", "seed end_timer", rows=2)
    with logger.timer("seed timer"):
        pass

    @logger.measure("seed measure")
    def seed_work():
        return 1
    seed_work()
    try:
        raise LookupError("seed failure")
    except LookupError as e:
        logger.error_with_trace("seed error_with_trace", exception=e)
    with AsyncLogClient.user_context(user_id="u-outer", trace_id=TRACE_ID):
        with AsyncLogClient.user_context(user_id="u-inner"):
            logger.info("seed user_context")
    AsyncLogClient.set_request_context(path="/orders", method="DELETE", request_id="r-1")
    logger.info("seed request_context")
    AsyncLogClient.clear_request_context()
    logger.info("seed cleared")
    assert logger.flush() is None
    logger.close()
    wait_count(pg, 15, settle=0.3)

    rows = by_message(pg)
    for m, r in rows.items():
        assert (r["service"], r["environment"], r["service_version"], r["log_type"]) == \
            ("legacy-api", "production", "v2.0.0", "BACKEND"), m
    r = rows["seed info"]
    assert (r["level"], r["user_id"], r["function_name"], r["file_path"]) == \
        ("INFO", "u-1", "test_python_seed_async_log_client", __file__)
    # the seed's server dropped these; now they are kept
    assert (meta(r)["order_id"], meta(r)["amount"]) == ("O-9", 1250)
    assert rows["seed log alias"]["level"] == "WARN"
    r = rows["seed no caller"]
    assert (r["level"], r["function_name"], r["file_path"]) == ("ERROR", None, None)
    assert "auto_caller" not in meta(r)
    assert {rows[f"seed {n}"]["level"] for n in ("trace", "debug", "warn", "error", "fatal")} == \
        {"TRACE", "DEBUG", "WARN", "ERROR", "FATAL"}
    assert rows["seed end_timer"]["duration_ms"] >= 19 and meta(rows["seed end_timer"])["rows"] == 2
    assert rows["seed timer"]["duration_ms"] is not None
    assert rows["seed measure"]["function_name"] == "seed_work"
    r = rows["seed error_with_trace"]
    assert (r["level"], r["error_type"]) == ("ERROR", "LookupError") and "seed failure" in r["stack_trace"]
    r = rows["seed user_context"]
    assert (r["user_id"], r["trace_id"]) == ("u-inner", TRACE_ID)
    r = rows["seed request_context"]
    assert (r["path"], r["method"], meta(r)["request_id"], r["user_id"]) == ("/orders", "DELETE", "r-1", None)
    r = rows["seed cleared"]
    assert r["path"] is None and "request_id" not in meta(r)


# ---- Node.js ----------------------------------------------------------------------------

NODE_MAIN = """
const { createLogClient, LogClient } = require(INDEX);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
(async () => {
  const log = createLogClient({ service: 'node-svc', environment: 'staging', serviceVersion: 'v3.1.0',
    logType: 'FRONTEND' });
  for (const name of ['trace', 'debug', 'info', 'warn', 'error', 'fatal']) log[name](`node ${name}`);
  log.log('warning', 'node alias warning');
  log.log('CRIT', 'node alias CRIT');
  log.log('notice', 'node alias notice');
  log.log('3', 'node syslog 3');
  log.log('verbose', 'node unknown level');
  log.info('node typed', { s: 'text', n: 42, neg: -7, big: 2 ** 60, frac: 0.25, b: false,
    bi: 12345678901234567n, huge: 2n ** 70n, o: { a: [1, 2] }, nul: null, u: undefined,
    user_id: 'u-9', session_id: 's-9', path: '/api/n', method: 'PUT', action_type: 'tap',
    trace_id: '0123456789abcdef0123456789abcdef', duration_ms: 3.25 });
  (function nodeCaller() { log.info('node caller', { autoCaller: true }); })();
  const t = log.startTimer();
  await sleep(20);
  log.endTimer(t, 'DEBUG', 'node endTimer', { rows: 2 });
  log.measure(function nodeWork() { return 1; });
  await log.measure(async function nodeLater() { await sleep(10); return 2; }, 'node measure async');
  try {
    (function nodeThrower() { throw new RangeError('out of range'); })();
  } catch (e) {
    log.errorWithTrace('node errorWithTrace', e, { order: 7 });
  }
  await LogClient.runWithUserContext({ user_id: 'u-ctx', trace_id: 'fedcba9876543210fedcba9876543210' },
    async () => {
      await sleep(1);
      await LogClient.runWithUserContext({ user_id: 'u-inner' }, async () => {
        await sleep(1);
        LogClient.runWithContext({ path: '/ctx', method: 'GET' }, () => log.info('node context'));
      });
    });
  log.info('node no context');
  const seed = createLogClient('http://localhost:8000', { service: 'node-seed', batchSize: 10,
    flushInterval: 1000, enableCompression: true, maxRetries: 3 });
  seed.warn('node seed form', { extra: 'kept' });
  await seed.close();
  await log.close();
  console.log(JSON.stringify({ dropped: log.droppedTotal + seed.droppedTotal, pid: process.pid }));
})();
"""


def test_node_levels_fields_helpers_context_and_seed_form(agentd, pg):
    a = agentd(FAST)
    r = run_node(NODE_MAIN, {"AGENT_STREAM_SOCKET": a.stream})
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["dropped"] == 0
    wait_count(pg, 20, settle=0.3)

    rows = by_message(pg)
    levels = {m: r["level"] for m, r in rows.items()}
    assert levels == {
        "node trace": "TRACE", "node debug": "DEBUG", "node info": "INFO", "node warn": "WARN",
        "node error": "ERROR", "node fatal": "FATAL", "node alias warning": "WARN", "node alias CRIT": "FATAL",
        "node alias notice": "INFO", "node syslog 3": "ERROR", "node unknown level": "INFO",
        "node typed": "INFO", "node caller": "INFO", "node endTimer": "DEBUG", "nodeWork completed": "INFO",
        "node measure async": "INFO", "node errorWithTrace": "ERROR", "node context": "INFO",
        "node no context": "INFO", "node seed form": "WARN"}
    assert meta(rows["node unknown level"])["level"] == "verbose"
    for m, row in rows.items():
        # the stream socket's peer credentials: the child, not this process
        assert row["metadata"]["pid"] == out["pid"], m
        if m != "node seed form":
            assert (row["service"], row["environment"], row["service_version"], row["log_type"]) == \
                ("node-svc", "staging", "v3.1.0", "FRONTEND"), m

    r = rows["node typed"]
    assert (r["user_id"], r["session_id"], r["path"], r["method"], r["action_type"], r["trace_id"]) == \
        ("u-9", "s-9", "/api/n", "PUT", "tap", TRACE_ID)
    assert r["duration_ms"] == decimal.Decimal("3.250")
    m = meta(r)
    assert float(m.pop("big")) == 2.0 ** 60  # a double (agentd may print it without an exponent)
    assert m == {"s": "text", "n": 42, "neg": -7, "frac": 0.25, "b": False,
                 "bi": 12345678901234567, "huge": str(2 ** 70), "o": '{"a":[1,2]}'}
    assert type(m["n"]) is int and type(m["bi"]) is int and type(m["b"]) is bool
    r = rows["node caller"]
    assert r["function_name"] == "nodeCaller" and r["file_path"] and isinstance(meta(r)["line"], int)
    assert "autoCaller" not in meta(r)
    assert rows["node no context"]["function_name"] is None  # autoCaller is off by default
    r = rows["node endTimer"]
    assert r["duration_ms"] >= 19 and meta(r)["rows"] == 2
    assert rows["nodeWork completed"]["function_name"] == "nodeWork"
    r = rows["node measure async"]
    assert r["function_name"] == "nodeLater" and r["duration_ms"] >= 9
    r = rows["node errorWithTrace"]
    assert (r["error_type"], r["function_name"], meta(r)["order"]) == ("RangeError", "nodeThrower", 7)
    assert "RangeError: out of range" in r["stack_trace"]
    r = rows["node context"]
    assert (r["user_id"], r["trace_id"], r["path"], r["method"]) == \
        ("u-inner", "fedcba9876543210fedcba9876543210", "/ctx", "GET")
    r = rows["node no context"]
    assert (r["user_id"], r["trace_id"], r["path"]) == (None, None, None)
    r = rows["node seed form"]
    assert (r["service"], meta(r)["extra"]) == ("node-seed", "kept")
    # the service's environment came from NODE_ENV / ENVIRONMENT or the server default
    assert r["environment"] in ("development", "production", "staging", "test", "local")


NODE_CRASH = """
const log = require(INDEX).createLogClient({ service: 'node-crashy', enableGlobalErrorHandler: true });
setTimeout(() => {
  function nodeCrash() { throw new TypeError('node kaboom'); }
  nodeCrash();
}, 100);
"""

NODE_CRASH_AT_ONCE = """
const log = require(INDEX).createLogClient({ service: 'node-crashy', enableGlobalErrorHandler: true });
function startupCrash() { throw new Error('crash before connecting'); }
startupCrash();
"""

NODE_REJECTION = """
const log = require(INDEX).createLogClient({ service: 'node-crashy', enableGlobalErrorHandler: true });
setTimeout(() => Promise.reject(new SyntaxError('nobody caught this')), 100);
"""


def test_node_uncaught_exception_and_rejection_are_logged_and_the_child_dies(agentd, pg):
    a = agentd(FAST)
    env = {"AGENT_STREAM_SOCKET": a.stream}
    for code, text in ((NODE_CRASH, "node kaboom"), (NODE_CRASH_AT_ONCE, "crash before connecting"),
                       (NODE_REJECTION, "nobody caught this")):
        r = run_node(code, env)
        assert r.returncode != 0, f"the child survived: {r.stderr}"
        assert text in r.stderr  # Node still printed the error
    wait_count(pg, 3, settle=0.3)
    rows = by_message(pg)
    r = rows["Uncaught exception: TypeError: node kaboom"]
    assert (r["level"], r["error_type"], r["function_name"], r["service"]) == \
        ("FATAL", "TypeError", "nodeCrash", "node-crashy")
    assert "node kaboom" in r["stack_trace"] and meta(r)["origin"] == "uncaughtException"
    r = rows["Uncaught exception: Error: crash before connecting"]
    assert (r["level"], r["error_type"], r["function_name"]) == ("FATAL", "Error", "startupCrash")
    r = next(v for k, v in rows.items() if k.startswith("Unhandled promise rejection"))
    assert "nobody caught this" in r["message"]
    assert (r["error_type"], meta(r)["origin"]) == ("SyntaxError", "unhandledRejection")
    assert r["level"] in ("ERROR", "FATAL")
