#!/usr/bin/python3
"""Reference receiver: the log server's POST /logs contract (docs UPSTREAM.md).

Keeps the contract exactly: 400 for a body that is not gzip when it says so,
not JSON, without `logs` or with `logs` not an array; every other failure,
including one value of the wrong JSON type, outside its enum or longer than its
column, rejects the whole batch with 500 and the error text. Each batch is
loaded with one COPY (asyncpg copy_records_to_table); enums, VARCHAR lengths,
DECIMAL(10,3), NUL and invalid UTF-8 are checked by PostgreSQL itself.

For tests it also keeps an in-memory log of requests and takes faults under
/_test/ (reset, fail, delay, refuse, requests). Run with Debian's python3:

    /usr/bin/python3 tests/receiver/receiver.py --port 8000 --pg-host /run/postgresql
"""
import argparse
import asyncio
import datetime
import decimal
import gzip
import json
import re
import sys
import time
import zlib

import asyncpg
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

SCHEMA = """
DO $$ BEGIN
  CREATE TYPE level AS ENUM ('TRACE','DEBUG','INFO','WARN','ERROR','FATAL');
EXCEPTION WHEN duplicate_object THEN NULL; END $$;
DO $$ BEGIN
  CREATE TYPE log_type AS ENUM ('BACKEND','FRONTEND','MOBILE','IOT','WORKER');
EXCEPTION WHEN duplicate_object THEN NULL; END $$;
DO $$ BEGIN
  CREATE TYPE environment AS ENUM ('production','staging','development','test','local');
EXCEPTION WHEN duplicate_object THEN NULL; END $$;
DO $$ BEGIN
  CREATE TYPE method AS ENUM ('GET','POST','PUT','DELETE','PATCH','HEAD','OPTIONS');
EXCEPTION WHEN duplicate_object THEN NULL; END $$;
CREATE TABLE IF NOT EXISTS logs (
  id BIGSERIAL PRIMARY KEY,
  created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
  level level NOT NULL DEFAULT 'INFO',
  log_type log_type NOT NULL DEFAULT 'BACKEND',
  message TEXT NOT NULL,
  service VARCHAR(100) NOT NULL DEFAULT 'unknown',
  environment environment NOT NULL DEFAULT 'development',
  service_version VARCHAR(50) NOT NULL DEFAULT 'v0.0.0-dev',
  trace_id VARCHAR(32),
  user_id VARCHAR(255),
  session_id VARCHAR(100),
  error_type VARCHAR(200),
  stack_trace TEXT,
  path VARCHAR(500),
  method method,
  action_type VARCHAR(50),
  function_name VARCHAR(300),
  file_path VARCHAR(1000),
  duration_ms DECIMAL(10,3),
  metadata JSONB,
  deleted BOOLEAN NOT NULL DEFAULT false
);
"""

# Column, JSON type it takes, default when the key is absent.
STR, NUM, OBJ = "string", "number", "object"
COLUMNS = [
    ("created_at", NUM, None),  # None here: "now" at the server
    ("level", STR, "INFO"),
    ("log_type", STR, "BACKEND"),
    ("message", STR, None),
    ("service", STR, "unknown"),
    ("environment", STR, "development"),
    ("service_version", STR, "v0.0.0-dev"),
    ("trace_id", STR, None),
    ("user_id", STR, None),
    ("session_id", STR, None),
    ("error_type", STR, None),
    ("stack_trace", STR, None),
    ("path", STR, None),
    ("method", STR, None),
    ("action_type", STR, None),
    ("function_name", STR, None),
    ("file_path", STR, None),
    ("duration_ms", NUM, None),
    ("metadata", OBJ, None),
]
COLUMN_NAMES = [c[0] for c in COLUMNS]


class BadRequest(Exception):
    """Answered 400."""


class BadRecord(Exception):
    """Answered 500, like the server's failed COPY."""


def _reject_constant(name):
    raise ValueError(f"not JSON: {name}")


def parse_body(raw, encoding):
    """Return the `logs` list or raise BadRequest; also the decoded size."""
    if encoding == "gzip":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as e:
            raise BadRequest(f"body is not gzip: {e}")
    elif encoding not in ("", "identity"):
        raise BadRequest(f"unsupported Content-Encoding: {encoding}")
    try:
        body = json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError) as e:
        raise BadRequest(f"body is not JSON: {e}")
    if not isinstance(body, dict) or "logs" not in body:
        raise BadRequest("no 'logs' in body")
    if not isinstance(body["logs"], list):
        raise BadRequest("'logs' is not an array")
    return body["logs"], len(raw)


def is_number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def convert(rec, now):
    """One record as a row tuple in COLUMN_NAMES order, strictly typed."""
    if not isinstance(rec, dict):
        raise BadRecord(f"record is not an object: {rec!r:.80}")
    if "message" not in rec:
        raise BadRecord("record without 'message'")
    row = []
    for name, kind, default in COLUMNS:
        if name not in rec:
            row.append(now if name == "created_at" else default)
            continue
        v = rec[name]
        if kind == STR and not isinstance(v, str):
            raise BadRecord(f"{name}: expected a string, got {type(v).__name__}")
        if kind == NUM and not is_number(v):
            raise BadRecord(f"{name}: expected a number, got {type(v).__name__}")
        if kind == OBJ and not isinstance(v, dict):
            raise BadRecord(f"{name}: expected an object, got {type(v).__name__}")
        if name == "created_at":
            try:
                v = datetime.datetime.fromtimestamp(v, tz=datetime.timezone.utc)
            except (OverflowError, OSError, ValueError) as e:
                raise BadRecord(f"created_at: {e}")
        elif name == "duration_ms":
            v = decimal.Decimal(repr(v)) if isinstance(v, float) else decimal.Decimal(v)
        elif name == "metadata":
            v = json.dumps(v)
        row.append(v)
    return tuple(row)


class State:
    def __init__(self):
        self.pool = None
        self.reset()

    def reset(self):
        self.requests = []
        self.fail_count = 0
        self.fail_status = 503
        self.fail_retry_after = None
        self.delay_ms = 0
        self.delay_only_ok = False  # delay only the answers that accept
        self.refuse = None


def create_app(dsn, pool_size=4):
    app = FastAPI()
    st = State()
    app.state.receiver = st

    @app.on_event("startup")
    async def startup():
        st.pool = await asyncpg.create_pool(dsn, min_size=1, max_size=pool_size)
        async with st.pool.acquire() as conn:
            await conn.execute("SELECT pg_advisory_lock(4242)")
            try:
                await conn.execute(SCHEMA)
            finally:
                await conn.execute("SELECT pg_advisory_unlock(4242)")

    @app.on_event("shutdown")
    async def shutdown():
        if st.pool is not None:
            await st.pool.close()

    @app.get("/")
    async def health():
        return {"status": "ok"}

    @app.post("/logs")
    async def post_logs(request: Request):
        raw = await request.body()
        enc = request.headers.get("content-encoding", "").strip().lower()
        entry = {"time": time.time(), "status": None, "content_encoding": enc or None,
                 "records": None, "body_bytes": len(raw), "json_bytes": None, "error": None}
        st.requests.append(entry)
        status, payload, headers = await handle(raw, enc, entry)
        if st.delay_ms and (not st.delay_only_ok or status == 200):
            await asyncio.sleep(st.delay_ms / 1000)
        entry["status"] = status
        if status != 200:
            entry["error"] = payload.get("detail")
        return JSONResponse(payload, status_code=status, headers=headers)

    async def handle(raw, enc, entry):
        try:
            logs, entry["json_bytes"] = parse_body(raw, enc)
            entry["records"] = len(logs)
        except BadRequest as e:
            logs = None
            bad = e
        if st.fail_count > 0:
            st.fail_count -= 1
            headers = {}
            if st.fail_retry_after is not None:
                headers["Retry-After"] = str(st.fail_retry_after)
            return st.fail_status, {"detail": "injected failure"}, headers
        if logs is None:
            return 400, {"detail": str(bad)}, {}
        try:
            now = datetime.datetime.now(datetime.timezone.utc)
            rows = [convert(r, now) for r in logs]
            if st.refuse is not None:
                for r in logs:
                    if isinstance(r.get("message"), str) and st.refuse.search(r["message"]):
                        raise BadRecord(f"refused record: {r['message']!r:.200}")
            if rows:
                async with st.pool.acquire() as conn:
                    await conn.copy_records_to_table("logs", records=rows, columns=COLUMN_NAMES)
        except Exception as e:  # the server answers 500 with the error text
            return 500, {"detail": f"{type(e).__name__}: {e}"}, {}
        return 200, {"status": "ok", "count": len(rows)}, {}

    # ---- test control ------------------------------------------------------
    @app.post("/_test/reset")
    async def t_reset():
        st.reset()
        async with st.pool.acquire() as conn:
            await conn.execute("TRUNCATE logs RESTART IDENTITY")
        return {"status": "ok"}

    @app.post("/_test/fail")
    async def t_fail(request: Request):
        q = await request.json()
        st.fail_count = int(q.get("count", 1))
        st.fail_status = int(q.get("status", 503))
        st.fail_retry_after = q.get("retry_after")
        return {"status": "ok"}

    @app.post("/_test/delay")
    async def t_delay(request: Request):
        q = await request.json()
        st.delay_ms = int(q.get("ms", 0))
        st.delay_only_ok = bool(q.get("only_ok", False))
        return {"status": "ok"}

    @app.post("/_test/refuse")
    async def t_refuse(request: Request):
        pattern = (await request.json()).get("pattern")
        st.refuse = re.compile(pattern) if pattern else None
        return {"status": "ok"}

    @app.get("/_test/requests")
    async def t_requests():
        return {"requests": st.requests}

    return app


def main(argv=None):
    ap = argparse.ArgumentParser(description="reference log receiver (POST /logs)")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8000, help="0 picks a free port (printed)")
    ap.add_argument("--dsn", help="PostgreSQL DSN; else --pg-* below")
    ap.add_argument("--pg-host", default="/run/postgresql", help="host or unix socket directory")
    ap.add_argument("--pg-port", type=int, default=5432)
    ap.add_argument("--pg-db", default="postgres")
    ap.add_argument("--pg-user", default="postgres")
    args = ap.parse_args(argv)
    dsn = args.dsn or f"postgresql://{args.pg_user}@/{args.pg_db}?host={args.pg_host}&port={args.pg_port}"

    config = uvicorn.Config(create_app(dsn), host=args.host, port=args.port, log_level="warning",
                            access_log=False, lifespan="on")
    server = uvicorn.Server(config)

    async def run():
        task = asyncio.create_task(server.serve())
        while not server.started:
            if task.done():
                return task.result()
            await asyncio.sleep(0.02)
        port = server.servers[0].sockets[0].getsockname()[1]
        print(f"receiver ready on http://{args.host}:{port}", flush=True)
        await task

    asyncio.run(run())
    return 0 if server.started else 1


if __name__ == "__main__":
    sys.exit(main())
