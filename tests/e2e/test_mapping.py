"""DESIGN.md's mapping rules, as they land in PostgreSQL, with every batch accepted.

Frames are built here (harness.encode_frame, PROTOCOL.md) so that any value can
be sent, including ones no shim would produce.
"""
import datetime
import decimal
import os
import socket

from harness import T_STRING, agent_log, comm, encode_frame, send_frames, wait_count

INFO, DEBUG, WARN, ERROR = 2, 1, 3, 4
ORIGIN = {"pid", "uid", "gid", "process", "host"}

# message -> (header level, fields, expected columns, expected metadata without the origin keys)
CASES = {
    "alias warning": (INFO, [("level", "warning")], {"level": "WARN"}, {}),
    "alias critical": (INFO, [("level", "critical")], {"level": "FATAL"}, {}),
    "alias ERR upper case": (INFO, [("level", "ERR")], {"level": "ERROR"}, {}),
    "alias notice": (DEBUG, [("level", "notice")], {"level": "INFO"}, {}),
    "syslog number 4": (INFO, [("level", 4)], {"level": "WARN"}, {}),
    "syslog number 2": (INFO, [("level", 2)], {"level": "FATAL"}, {}),
    "syslog string 7": (INFO, [("level", "7")], {"level": "DEBUG"}, {}),
    "level not a level": (ERROR, [("level", "verbose")], {"level": "ERROR"}, {"level": "verbose"}),
    "header level only": (WARN, [], {"level": "WARN"}, {}),
    "user_id number": (INFO, [("user_id", 42)], {"user_id": "42"}, {}),
    "environment prod": (INFO, [("environment", "prod")], {"environment": "development"},
                         {"environment": "prod"}),
    "method FOO": (INFO, [("method", "FOO")], {"method": None}, {"method": "FOO"}),
    "valid enums": (INFO, [("environment", "production"), ("method", "PATCH"), ("log_type", "WORKER")],
                    {"environment": "production", "method": "PATCH", "log_type": "WORKER"}, {}),
    "log_type unknown": (INFO, [("log_type", "CRON")], {"log_type": "BACKEND"}, {"log_type": "CRON"}),
    "service 101 chars": (INFO, [("service", "s" * 101)], {"service": "unknown"}, {"service": "s" * 101}),
    "service 100 chars": (INFO, [("service", "s" * 100)], {"service": "s" * 100}, {}),
    "trace_id 33 chars": (INFO, [("trace_id", "t" * 33)], {"trace_id": None}, {"trace_id": "t" * 33}),
    "unknown keys": (INFO, [("order_id", "A1"), ("amount", 1250), ("ratio", 0.25), ("ok", True)], {},
                     {"order_id": "A1", "amount": 1250, "ratio": 0.25, "ok": True}),
    "wrong types": (INFO, [("duration_ms", "fast"), ("session_id", True)], {"duration_ms": None, "session_id": None},
                    {"duration_ms": "fast", "session_id": True}),
    "duration number": (INFO, [("duration_ms", 12.5)], {"duration_ms": decimal.Decimal("12.500")}, {}),
    "duration int": (INFO, [("duration_ms", 7)], {"duration_ms": decimal.Decimal("7.000")}, {}),
    "every string column": (INFO, [("service", "billing"), ("service_version", "v1.2.3"),
                                   ("trace_id", "0123456789abcdef0123456789abcdef"), ("user_id", "u-7"),
                                   ("session_id", "s-9"), ("error_type", "KeyError"), ("stack_trace", "a\nb"),
                                   ("path", "/api/x"), ("action_type", "click"), ("function_name", "handler"),
                                   ("file_path", "/srv/app.py")],
                            {"service": "billing", "service_version": "v1.2.3",
                             "trace_id": "0123456789abcdef0123456789abcdef", "user_id": "u-7", "session_id": "s-9",
                             "error_type": "KeyError", "stack_trace": "a\nb", "path": "/api/x",
                             "action_type": "click", "function_name": "handler", "file_path": "/srv/app.py"}, {}),
    "forged origin": (INFO, [("pid", 1), ("host", "forged"), ("process", "init")], {},
                      {"client_pid": 1, "client_host": "forged", "client_process": "init"}),
    "duplicate keys": (INFO, [("k", 1), ("k", 2)], {}, {"k": 1, "k#2": 2}),
}


def test_every_mapping_rule_lands_with_the_batch_accepted(agentd, receiver, pg):
    a = agentd()
    frames = [encode_frame(msg, fields, level=lvl) for msg, (lvl, fields, _, _) in CASES.items()]
    send_frames(a.sock, frames)
    wait_count(pg, len(CASES), settle=0.5)
    assert all(q["status"] == 200 for q in receiver.requests())

    rows = {r["message"]: r for r in pg.rows("SELECT * FROM logs")}
    me = {"pid": os.getpid(), "uid": os.getuid(), "gid": os.getgid(), "process": comm(),
          "host": socket.gethostname()}
    for msg, (_, _, cols, meta) in CASES.items():
        r = rows[msg]
        for k, v in cols.items():
            assert r[k] == v, f"{msg}: column {k} is {r[k]!r}, expected {v!r}"
        m = r["metadata"]
        assert {k: m.get(k) for k in ORIGIN} == me, f"{msg}: origin {m}"
        assert {k: v for k, v in m.items() if k not in ORIGIN} == meta, f"{msg}: metadata {m}"


def test_invalid_utf8_and_nul_are_replaced(agentd, receiver, pg):
    a = agentd()
    send_frames(a.sock, [
        encode_frame(b"bad \xff byte", [("note", b"x\x00y", T_STRING), ("service", b"svc\xfe", T_STRING)]),
        encode_frame(b"nul \x00 inside"),
    ])
    wait_count(pg, 2, settle=0.3)
    assert all(q["status"] == 200 for q in receiver.requests())
    rows = {r["message"]: r for r in pg.rows("SELECT message, service, metadata FROM logs")}
    assert set(rows) == {"bad \ufffd byte", "nul \ufffd inside"}
    r = rows["bad \ufffd byte"]
    assert r["metadata"]["note"] == "x\ufffdy"
    assert r["service"] == "svc\ufffd"


def test_created_at_is_the_time_of_the_call(agentd, pg):
    a = agentd()
    send_frames(a.sock, [encode_frame("timed", time_ns=1732800000123456000)])
    wait_count(pg, 1)
    got = pg.scalar("SELECT created_at FROM logs")
    want = datetime.datetime(2024, 11, 28, 13, 20, 0, 123456, tzinfo=datetime.timezone.utc)
    assert abs((got - want).total_seconds()) <= 2e-6, got


def test_truncated_flag_lands_in_metadata(agentd, pg):
    a = agentd()
    send_frames(a.sock, [encode_frame("cut short", flags=1)])
    wait_count(pg, 1)
    assert pg.scalar("SELECT metadata->'truncated' FROM logs") == "true"


def test_agent_log_names_and_aliases(agentd, receiver, pg):
    a = agentd()
    agent_log(a.sock, "cli warning", level="warning", service="cli", fields={"order": "A1"},
              json_fields={"user_id": 42, "amount": 1250, "env_ok": True})
    agent_log(a.sock, "cli critical", level="critical")
    agent_log(a.sock, "cli syslog 3", level="3")
    agent_log(a.sock, "cli default")
    wait_count(pg, 4, settle=0.3)
    rows = {r["message"]: r for r in pg.rows("SELECT message, level, service, user_id, metadata FROM logs")}
    r = rows["cli warning"]
    assert (r["level"], r["service"], r["user_id"]) == ("WARN", "cli", "42")
    m = r["metadata"]
    assert (m["order"], m["amount"], m["env_ok"], m["pid"] > 0) == ("A1", 1250, True, True)
    assert m.get("process", "agent-log") == "agent-log"  # absent when agent-log exited first
    assert rows["cli critical"]["level"] == "FATAL"
    assert rows["cli syslog 3"]["level"] == "ERROR"
    assert rows["cli default"]["level"] == "INFO"
