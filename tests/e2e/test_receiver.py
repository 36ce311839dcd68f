"""The reference receiver keeps the server's contract (UPSTREAM.md)."""
import datetime
import decimal
import gzip
import json

import pytest

FULL = {
    "level": "WARN",
    "message": "paid",
    "created_at": 1732800000.25,
    "log_type": "WORKER",
    "service": "billing",
    "environment": "staging",
    "service_version": "v1.2.3",
    "trace_id": "0123456789abcdef0123456789abcdef",
    "user_id": "u-42",
    "session_id": "s-1",
    "error_type": "ValueError",
    "stack_trace": "Traceback ...\n  line 1",
    "path": "/api/pay",
    "method": "POST",
    "action_type": "pay",
    "function_name": "pay",
    "file_path": "/srv/app/pay.py",
    "duration_ms": 12.5,
    "metadata": {"order": "A1", "n": 3, "nested": {"ok": True}},
}


def post(receiver, body, gz=False, raw=None):
    data = raw if raw is not None else json.dumps(body).encode()
    headers = {"Content-Type": "application/json"}
    if gz:
        data = gzip.compress(data)
        headers["Content-Encoding"] = "gzip"
    return receiver.request("POST", "/logs", data, headers)


def test_health(receiver):
    status, _, js = receiver.request("GET", "/")
    assert (status, js) == (200, {"status": "ok"})


def test_full_record_lands_in_every_column(receiver, pg):
    status, _, js = post(receiver, {"logs": [FULL, {"message": "bare"}]})
    assert (status, js) == (200, {"status": "ok", "count": 2})
    rows = pg.rows("SELECT * FROM logs ORDER BY id")
    assert len(rows) == 2
    r = rows[0]
    for k, v in FULL.items():
        if k == "created_at":
            assert r[k] == datetime.datetime(2024, 11, 28, 13, 20, 0, 250000, tzinfo=datetime.timezone.utc)
        elif k == "duration_ms":
            assert r[k] == decimal.Decimal("12.500")
        else:
            assert r[k] == v, k
    assert r["deleted"] is False and r["id"] == 1
    bare = rows[1]
    assert (bare["level"], bare["log_type"], bare["service"], bare["environment"], bare["service_version"]) == (
        "INFO", "BACKEND", "unknown", "development", "v0.0.0-dev")
    assert bare["metadata"] is None and bare["method"] is None and bare["user_id"] is None
    age = datetime.datetime.now(datetime.timezone.utc) - bare["created_at"]
    assert abs(age.total_seconds()) < 60


def test_gzip_body(receiver, pg):
    logs = [{"message": f"m{i}", "level": "DEBUG"} for i in range(150)]
    status, _, js = post(receiver, {"logs": logs}, gz=True)
    assert (status, js) == (200, {"status": "ok", "count": 150})
    assert pg.count("level = 'DEBUG'") == 150
    req = receiver.requests()[-1]
    assert req["content_encoding"] == "gzip" and req["records"] == 150
    assert req["body_bytes"] < req["json_bytes"]


def test_empty_array_is_accepted(receiver, pg):
    status, _, js = post(receiver, {"logs": []})
    assert (status, js) == (200, {"status": "ok", "count": 0})


@pytest.mark.parametrize("case,raw,gz_header", [
    ("not gzip", b'{"logs": []}', True),
    ("not JSON", b"{logs: ", False),
    ("NaN is not JSON", b'{"logs": [{"message": "x", "duration_ms": NaN}]}', False),
    ("invalid UTF-8", b'{"logs": [{"message": "\xff"}]}', False),
    ("no logs", b'{"records": []}', False),
    ("top level is an array", b"[]", False),
    ("logs is an object", b'{"logs": {"message": "x"}}', False),
    ("logs is a string", b'{"logs": "x"}', False),
])
def test_bad_bodies_are_400(receiver, pg, case, raw, gz_header):
    headers = {"Content-Type": "application/json"}
    if gz_header:
        headers["Content-Encoding"] = "gzip"
    status, _, _ = receiver.request("POST", "/logs", raw, headers)
    assert status == 400, case
    assert pg.count() == 0


@pytest.mark.parametrize("case,bad", [
    ("user_id number", {"user_id": 42}),
    ("bool as duration", {"duration_ms": True}),
    ("string created_at", {"created_at": "2024-11-28"}),
    ("level not in enum", {"level": "WARNING"}),
    ("lowercase level", {"level": "warn"}),
    ("environment not in enum", {"environment": "prod"}),
    ("method not in enum", {"method": "FOO"}),
    ("log_type not in enum", {"log_type": "CRON"}),
    ("service over 100", {"service": "s" * 101}),
    ("trace_id over 32", {"trace_id": "a" * 33}),
    ("duration over DECIMAL(10,3)", {"duration_ms": 1e8}),
    ("metadata with NUL", {"metadata": {"k": "a\u0000b"}}),
    ("message with NUL", {"message": "a\u0000b"}),
    ("metadata not an object", {"metadata": ["x"]}),
    ("null service", {"service": None}),
    ("no message", {"message": None, "_drop_message": True}),
    ("record not an object", None),
])
def test_one_bad_value_rejects_the_whole_batch(receiver, pg, case, bad):
    if bad is None:
        bad_rec = "just a string"
    else:
        bad_rec = {"message": "bad", **bad}
        if bad_rec.pop("_drop_message", False):
            del bad_rec["message"]
    logs = [{"message": "good 1"}, bad_rec, {"message": "good 2"}]
    status, _, js = post(receiver, {"logs": logs})
    assert status == 500, (case, js)
    assert js["detail"]
    assert pg.count() == 0, "nothing of a rejected batch is stored"


def test_limits_are_inclusive(receiver, pg):
    rec = {"message": "edge", "service": "s" * 100, "trace_id": "a" * 32, "duration_ms": 9999999.999,
           "service_version": "v" * 50, "user_id": "u" * 255}
    status, _, js = post(receiver, {"logs": [rec]})
    assert status == 200, js
    assert pg.scalar("SELECT duration_ms FROM logs") == decimal.Decimal("9999999.999")


def test_unknown_top_level_keys_are_ignored(receiver, pg):
    status, _, _ = post(receiver, {"logs": [{"message": "x", "order_id": 7}]})
    assert status == 200
    assert pg.rows("SELECT message, metadata FROM logs") == [{"message": "x", "metadata": None}]


def test_injected_faults(receiver, pg):
    receiver.fail(2, status=503, retry_after="3")
    s1, h1, _ = post(receiver, {"logs": [{"message": "a"}]})
    s2, _, _ = post(receiver, {"logs": [{"message": "a"}]})
    s3, _, _ = post(receiver, {"logs": [{"message": "a"}]})
    assert (s1, s2, s3) == (503, 503, 200)
    assert h1.get("retry-after") == "3"
    receiver.refuse("^poison")
    assert post(receiver, {"logs": [{"message": "ok"}, {"message": "poison pill"}]})[0] == 500
    assert post(receiver, {"logs": [{"message": "ok"}]})[0] == 200
    assert pg.count() == 2
    log = receiver.requests()
    assert [r["status"] for r in log] == [503, 503, 200, 500, 200]
    assert all(r["records"] in (1, 2) for r in log)
