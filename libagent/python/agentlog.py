"""agentlog: send structured log records to the local agentd daemon.

    import agentlog
    log = agentlog.Client(service="payments")
    log.info("paid", user_id="u-42", cents=1250)
    with log.timer("db query"):
        ...

Owns: the Python encoder of the version-1 record protocol (proto/PROTOCOL.md)
and one non-blocking AF_UNIX SOCK_DGRAM socket per Client.
Limits: one record per datagram, frames of at most 131072 bytes (a larger record
is cut and flagged TRUNCATED, never silently); stdlib only, Python 3.8+.
Failure: a call never blocks and never raises because of the daemon. A record
that cannot be handed over (socket full, daemon absent or restarting) is
counted in Client.dropped, and the number carried in the `dropped` header field
of the next record that gets through. A missing daemon is retried at most every
100 ms. The library prints nothing.
"""

import contextvars
import errno
import functools
import json
import logging
import os
import socket
import struct
import sys
import threading
import time
import traceback

__all__ = [
    "Client", "AgentHandler", "parse_level", "encode_frame", "level_name",
    "TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL", "LEVEL_NAMES", "LEVEL_ALIASES",
    "MAX_FRAME", "DEFAULT_SOCKET",
]

# ---- protocol constants (PROTOCOL.md) ---------------------------------------

MAGIC = b"AG"
VERSION = 1
HDR_SIZE = 24
MAX_FRAME = 131072
MAX_KEY = 255
MAX_FIELDS = 65535
F_TRUNCATED = 0x0001

T_STRING, T_INT64, T_DOUBLE, T_BOOL = 1, 2, 3, 4

TRACE, DEBUG, INFO, WARN, ERROR, FATAL = range(6)
LEVEL_NAMES = ("TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL")

# The alias table of PROTOCOL.md, "Levels and aliases" (matched case-insensitively).
LEVEL_ALIASES = {
    "trace": TRACE,
    "debug": DEBUG,
    "info": INFO, "information": INFO, "notice": INFO,
    "warn": WARN, "warning": WARN,
    "error": ERROR, "err": ERROR,
    "fatal": FATAL, "critical": FATAL, "crit": FATAL, "alert": FATAL,
    "emerg": FATAL, "emergency": FATAL, "panic": FATAL,
}
# syslog priorities 0..7, given as a one-digit string
SYSLOG_LEVELS = (FATAL, FATAL, FATAL, ERROR, WARN, INFO, INFO, DEBUG)

DEFAULT_SOCKET = "/run/agentd/agentd.sock"
RECONNECT_INTERVAL = 0.1  # seconds between attempts to reach a missing daemon

# Send buffer, as libagent sets it: with the kernel's default (208 KiB, each
# small datagram charged about 1 KiB), fewer datagrams can be in flight than
# agentd's queue holds (net.unix.max_dgram_qlen = 512), and a burst would be
# dropped here while agentd still has room.
SNDBUF_BYTES = 4 * 1024 * 1024
_SO_SNDBUFFORCE = getattr(socket, "SO_SNDBUFFORCE", 32)  # Linux; needs CAP_NET_ADMIN


def _grow_sndbuf(s):
    try:
        s.setsockopt(socket.SOL_SOCKET, _SO_SNDBUFFORCE, SNDBUF_BYTES)
    except OSError:
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SNDBUF_BYTES)  # capped at net.core.wmem_max
        except OSError:
            pass


_HDR = struct.Struct("<2sBBHHQII")
# The header as the fast path writes it: a per-level prefix (magic, version,
# level, flags 0), then nfields, time_ns, dropped, msg_len.
_LEVEL_HDR = tuple(b"AG\x01" + bytes((lv,)) + b"\x00\x00" for lv in range(6))
_HDR_REST = struct.Struct("<HQII").pack
_time_ns = time.time_ns
_U32 = struct.Struct("<I").pack
_I64 = struct.Struct("<q").pack
_F64 = struct.Struct("<d").pack
_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1
_U32_MAX = 0xFFFFFFFF
# send() errors that mean the daemon is gone or was restarted on a new socket
_GONE = frozenset((errno.ECONNREFUSED, errno.ENOENT, errno.ECONNRESET, errno.ENOTCONN,
                   errno.EPIPE, errno.EDESTADDRREQ))

# Lookup table built once: every case form is resolved through str.lower().
_LEVEL_LOOKUP = dict(LEVEL_ALIASES)
for _n, _l in LEVEL_ALIASES.items():
    _LEVEL_LOOKUP[_n.upper()] = _l
for _i, _l in enumerate(SYSLOG_LEVELS):
    _LEVEL_LOOKUP[str(_i)] = _l


def parse_level(level):
    """Level number (0..5) for a name, alias or syslog priority string
    ("warning", "CRIT", "4"), or for a level number 0..5; None otherwise."""
    if type(level) is int:
        return level if 0 <= level <= 5 else None
    if isinstance(level, bytes):
        try:
            level = level.decode("ascii")
        except UnicodeDecodeError:
            return None
    if not isinstance(level, str):
        return None
    lv = _LEVEL_LOOKUP.get(level)
    if lv is None and len(level) <= 16:
        lv = _LEVEL_LOOKUP.get(level.lower())
    return lv


def level_name(level):
    """'TRACE' .. 'FATAL' for a level number, None when out of range."""
    return LEVEL_NAMES[level] if type(level) is int and 0 <= level <= 5 else None


# ---- encoding ----------------------------------------------------------------

def _utf8_cut(data, n):
    """Longest prefix of data (at most n bytes, n < len(data)) that does not
    end inside a UTF-8 sequence: the rule of the C encoder."""
    i = n
    while i > 0 and n - i < 4 and (data[i] & 0xC0) == 0x80:
        i -= 1
    return n if (data[i] & 0xC0) == 0x80 else i


def _to_bytes(s):
    if isinstance(s, str):
        return s.encode("utf-8", "surrogatepass")
    if isinstance(s, (bytes, bytearray, memoryview)):
        return bytes(s)
    return str(s).encode("utf-8", "surrogatepass")


def _field_bytes(ftype, key, value):
    """Encoded field, or None when the key is not 1..255 bytes."""
    kb = _to_bytes(key)
    if not 0 < len(kb) <= MAX_KEY:
        return None
    if ftype == T_STRING:
        vb = _to_bytes(value)
        return bytes((T_STRING, len(kb))) + kb + _U32(len(vb)) + vb
    if ftype == T_INT64:
        return bytes((T_INT64, len(kb))) + kb + _I64(value)
    if ftype == T_DOUBLE:
        return bytes((T_DOUBLE, len(kb))) + kb + _F64(value)
    if ftype == T_BOOL:
        return bytes((T_BOOL, len(kb))) + kb + (b"\x01" if value else b"\x00")
    raise ValueError("unknown field type %r" % (ftype,))


def encode_frame(level, message, fields=(), time_ns=None, dropped=0, flags=0):
    """Encode one frame exactly as PROTOCOL.md (and the C encoder) does.

    fields: (key, type, value) triples in order, type one of T_STRING,
    T_INT64, T_DOUBLE, T_BOOL (or 'string', 'int64', 'double', 'bool').
    Strings may be str or bytes. A record above MAX_FRAME is cut: the message
    at a UTF-8 boundary, then every field that does not fit (or whose key is
    not 1..255 bytes) is skipped, and the TRUNCATED flag is set."""
    if time_ns is None:
        time_ns = time.time_ns()
    msg = _to_bytes(message) if message is not None else b""
    if len(msg) > MAX_FRAME - HDR_SIZE:
        msg = msg[:_utf8_cut(msg, MAX_FRAME - HDR_SIZE)]
        flags |= F_TRUNCATED
    parts = [b"", msg]
    size = HDR_SIZE + len(msg)
    n = 0
    for key, ftype, value in fields:
        ftype = _TYPE_NAMES.get(ftype, ftype)
        fb = _field_bytes(ftype, key, value)
        if fb is None or n >= MAX_FIELDS or size + len(fb) > MAX_FRAME:
            flags |= F_TRUNCATED
            continue
        parts.append(fb)
        size += len(fb)
        n += 1
    parts[0] = _HDR.pack(MAGIC, VERSION, level, flags, n, time_ns, min(dropped, _U32_MAX), len(msg))
    return b"".join(parts)


_TYPE_NAMES = {"string": T_STRING, "int64": T_INT64, "double": T_DOUBLE, "bool": T_BOOL}


def _typed(key, value):
    """(key, type, value) for a Python value, None for None (left out).
    bool -> BOOL; int in int64 range -> INT64 (else its decimal string);
    float -> DOUBLE; str/bytes -> STRING; dict/list/tuple -> JSON string;
    anything else -> str(value)."""
    t = type(value)
    if t is str or t is bytes:
        return (key, T_STRING, value)
    if t is bool:
        return (key, T_BOOL, value)
    if t is int:
        if _INT64_MIN <= value <= _INT64_MAX:
            return (key, T_INT64, value)
        return (key, T_STRING, str(value))
    if t is float:
        return (key, T_DOUBLE, value)
    if value is None:
        return None
    if isinstance(value, bool):
        return (key, T_BOOL, bool(value))
    if isinstance(value, int):
        return _typed(key, int(value))
    if isinstance(value, float):
        return (key, T_DOUBLE, float(value))
    if isinstance(value, (str, bytes, bytearray)):
        return (key, T_STRING, value if isinstance(value, str) else bytes(value))
    if isinstance(value, (dict, list, tuple)):
        try:
            return (key, T_STRING, json.dumps(value, default=str, ensure_ascii=False))
        except (TypeError, ValueError):
            pass
    return (key, T_STRING, str(value))


# Per-key cache of encoded field prefixes (type, key_len, key), by type.
_PFX = {T_STRING: {}, T_INT64: {}, T_DOUBLE: {}, T_BOOL: {}}


def _pfx(ftype, key):
    cache = _PFX[ftype]
    p = cache.get(key)
    if p is None:
        kb = _to_bytes(key)
        if not 0 < len(kb) <= MAX_KEY:
            return None
        p = bytes((ftype, len(kb))) + kb
        if len(cache) < 4096:
            cache[key] = p
    return p


_SPFX = _PFX[T_STRING]
_IPFX = _PFX[T_INT64]
_DPFX = _PFX[T_DOUBLE]
_BPFX = _PFX[T_BOOL]


# Encoded fields for recent (key, value) pairs: repeated values (paths,
# methods, status codes) cost one lookup. Bounded: emptied when full.
_SCACHE = {}
_ICACHE = {}
_VCACHE_MAX = 2048


def _remember(cache, key, fb):
    if len(cache) >= _VCACHE_MAX:
        cache.clear()
    cache[key] = fb


class _Slow(Exception):
    """Raised inside the fast encoder: take the general path."""


# ---- context ------------------------------------------------------------------

# Fields attached to every record sent from the current context (thread, task).
_context = contextvars.ContextVar("agentlog_context", default=None)


class _ContextScope:
    __slots__ = ("_fields", "_token", "_var")

    def __init__(self, var, fields):
        self._var = var
        self._fields = fields
        self._token = None

    def __enter__(self):
        cur = self._var.get()
        merged = dict(cur) if cur else {}
        merged.update(self._fields)
        self._token = self._var.set(merged)
        return merged

    def __exit__(self, *exc):
        self._var.reset(self._token)
        return False


class _Timer:
    __slots__ = ("_client", "_message", "_level", "_fields", "_t0")

    def __init__(self, client, message, level, fields):
        self._client = client
        self._message = message
        self._level = level
        self._fields = fields
        self._t0 = 0.0

    def __enter__(self):
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, et, ev, tb):
        fields = dict(self._fields)
        fields["duration_ms"] = (time.perf_counter() - self._t0) * 1000.0
        self._client._log(self._level, self._message, fields, sys._getframe(1))
        return False


# ---- the client -----------------------------------------------------------------

_CALLER_KEYS = frozenset(("function_name", "file_path", "line"))


def _env_true(name):
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


class Client:
    """A handle on agentd's ingest socket.

    socket_path: $AGENT_SOCKET, then /run/agentd/agentd.sock.
    service, environment, service_version, log_type: defaults for every record
    (a field given in a call wins), from SERVICE_NAME, ENVIRONMENT,
    SERVICE_VERSION, LOG_TYPE when not given; unset ones are left out, and the
    server's defaults apply.
    enable_global_error_handler: log uncaught exceptions (sys.excepthook and
    threading.excepthook, chained); also on when ENABLE_GLOBAL_ERROR_HANDLER is
    true. close() restores the previous hooks.
    """

    # context variables consulted for every record, first wins
    _context_vars = (_context,)

    def __init__(self, socket_path=None, service=None, environment=None, service_version=None,
                 log_type=None, enable_global_error_handler=False):
        self.socket_path = socket_path or os.environ.get("AGENT_SOCKET") or DEFAULT_SOCKET
        self.service = service or os.environ.get("SERVICE_NAME") or None
        self.environment = environment or os.environ.get("ENVIRONMENT") or None
        self.service_version = service_version or os.environ.get("SERVICE_VERSION") or None
        self.log_type = log_type or os.environ.get("LOG_TYPE") or None
        self._defaults = {}
        for key in ("service", "environment", "service_version", "log_type"):
            value = getattr(self, key)
            if value is not None:
                self._defaults[key] = value
        parts = []
        self._defaults_n = _fast_fields_safe(self._defaults, parts)
        self._defaults_blob = b"".join(parts)
        self._caller_cache = {}
        # keys that, given in a call, replace what the client adds itself
        self._reserved_nocaller = frozenset(self._defaults)
        self._reserved = self._reserved_nocaller | _CALLER_KEYS
        self.dropped = 0  # records not handed over since the last one that was
        self.dropped_total = 0  # since the client was created
        self._sock = None
        self._next_attempt = 0.0
        self._closed = False
        self._lock = threading.Lock()  # only for (re)connecting
        self._hooks = None
        self._connect()
        if enable_global_error_handler or _env_true("ENABLE_GLOBAL_ERROR_HANDLER"):
            self.enable_global_error_handler()

    # -- socket --------------------------------------------------------------

    def _connect(self):
        """Open and connect the socket; False when the daemon is not there
        (the next attempt is allowed RECONNECT_INTERVAL later)."""
        with self._lock:
            if self._sock is not None:
                return True
            if self._closed:
                return False
            self._next_attempt = time.monotonic() + RECONNECT_INTERVAL
            s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | getattr(socket, "SOCK_CLOEXEC", 0))
            try:
                _grow_sndbuf(s)
                s.setblocking(False)
                s.connect(self.socket_path)
            except OSError:
                s.close()
                return False
            self._sock = s
            return True

    def _drop_socket(self, s):
        with self._lock:
            if self._sock is s:
                self._sock = None
        try:
            s.close()
        except OSError:
            pass

    def _send(self, frame, carried):
        """Hand one frame over; counts a drop when that is not possible."""
        s = self._sock
        if s is None:
            if self._closed or time.monotonic() < self._next_attempt or not self._connect():
                self.dropped += 1
                self.dropped_total += 1
                return False
            s = self._sock
        try:
            s.send(frame)
        except BlockingIOError:
            self.dropped += 1
            self.dropped_total += 1
            return False
        except OSError as e:
            if e.errno not in _GONE:
                self.dropped += 1
                self.dropped_total += 1
                return False
            # the daemon went away (or was restarted on a new socket): one
            # immediate reconnect, then at most every RECONNECT_INTERVAL
            self._drop_socket(s)
            if time.monotonic() >= self._next_attempt and self._connect():
                s = self._sock
                try:
                    s.send(frame)
                except (OSError, AttributeError):
                    pass
                else:
                    if carried:
                        self.dropped -= carried
                    return True
            self.dropped += 1
            self.dropped_total += 1
            return False
        if carried:
            self.dropped -= carried
        return True

    # -- encoding ------------------------------------------------------------

    def _caller_blob(self, frame):
        """function_name, file_path and line of frame, encoded (cached per
        code object and line)."""
        code = frame.f_code
        by_line = self._caller_cache.get(code)
        if by_line is None:
            by_line = {}
            if len(self._caller_cache) < 8192:
                self._caller_cache[code] = by_line
        line = frame.f_lineno
        blob = by_line.get(line)
        if blob is None:
            parts = []
            _fast_fields_safe({"function_name": code.co_name, "file_path": code.co_filename,
                               "line": line}, parts)
            blob = b"".join(parts)
            if len(by_line) < 256:
                by_line[line] = blob
        return blob

    def _log(self, level, message, fields, frame, time_ns=None):
        """Encode and send one record. level: number or name; fields: dict;
        frame: the caller's frame (for function_name, file_path, line) or None."""
        t = time_ns or _time_ns()
        if level.__class__ is not int or not 0 <= level <= 5:
            lv = parse_level(level)
            if lv is None:
                # keep the unknown name: agentd moves it to metadata.level
                fields = dict(fields)
                fields.setdefault("level", level if isinstance(level, str) else repr(level))
                lv = INFO
            level = lv
        for var in self._context_vars:
            ctx = var.get()
            if ctx:
                merged = dict(ctx)
                merged.update(fields)
                fields = merged
        if message.__class__ is not str or (fields and not fields.keys().isdisjoint(
                self._reserved if frame is not None else self._reserved_nocaller)):
            return self._log_slow(level, message, fields, frame, t)
        try:
            mb = message.encode()
            n = self._defaults_n
            if frame is not None:
                parts = [_LEVEL_HDR[level], b"", mb, self._defaults_blob, self._caller_blob(frame)]
                n += 3
            else:
                parts = [_LEVEL_HDR[level], b"", mb, self._defaults_blob]
            if fields:
                append = parts.append
                for k, v in fields.items():
                    c = v.__class__
                    if c is str:
                        fb = _SCACHE.get((k, v))
                        if fb is None:
                            vb = v.encode()
                            fb = (_SPFX.get(k) or _pfx(T_STRING, k)) + _U32(len(vb)) + vb
                            if len(vb) <= 64:
                                _remember(_SCACHE, (k, v), fb)
                        append(fb)
                    elif c is int:
                        fb = _ICACHE.get((k, v))
                        if fb is None:
                            if not _INT64_MIN <= v <= _INT64_MAX:
                                raise _Slow
                            fb = (_IPFX.get(k) or _pfx(T_INT64, k)) + _I64(v)
                            _remember(_ICACHE, (k, v), fb)
                        append(fb)
                    elif c is float:
                        append((_DPFX.get(k) or _pfx(T_DOUBLE, k)) + _F64(v))
                    elif c is bool:
                        append((_BPFX.get(k) or _pfx(T_BOOL, k)) + (b"\x01" if v else b"\x00"))
                    elif v is None:
                        continue
                    else:
                        raise _Slow
                    n += 1
        except (_Slow, UnicodeEncodeError, TypeError):
            # TypeError: a key that _pfx refused (None + bytes)
            return self._log_slow(level, message, fields, frame, t)
        d = self.dropped
        parts[1] = _HDR_REST(n, t, d if d <= _U32_MAX else _U32_MAX, len(mb))
        frame_bytes = b"".join(parts)
        if len(frame_bytes) > MAX_FRAME:
            return self._log_slow(level, message, fields, frame, t)
        s = self._sock
        if s is not None:
            try:
                s.send(frame_bytes)
            except BlockingIOError:
                self.dropped += 1
                self.dropped_total += 1
                return False
            except OSError:
                return self._send(frame_bytes, d)
            if d:
                self.dropped -= d
            return True
        return self._send(frame_bytes, d)

    def _log_slow(self, level, message, fields, frame, t):
        """The general path: any value type, reserved keys given by the caller,
        records that must be truncated."""
        triples = []
        for key, value in self._defaults.items():
            if key not in fields:
                triples.append((key, T_STRING, value))
        if frame is not None:
            code = frame.f_code
            if "function_name" not in fields:
                triples.append(("function_name", T_STRING, code.co_name))
            if "file_path" not in fields:
                triples.append(("file_path", T_STRING, code.co_filename))
            if "line" not in fields:
                triples.append(("line", T_INT64, frame.f_lineno))
        for key, value in fields.items():
            tv = _typed(key, value)
            if tv is not None:
                triples.append(tv)
        if message is None:
            message = ""
        d = self.dropped
        frame_bytes = encode_frame(level, message, triples, t, d)
        return self._send(frame_bytes, d)

    # -- public API ----------------------------------------------------------

    def log(self, level, message, **fields):
        """Send one record at level (a name, an alias, a syslog priority string
        or a number 0..5). Unknown level names are sent as INFO with the name in
        a `level` field (agentd keeps it in metadata.level)."""
        return self._log(level, message, fields, sys._getframe(1))

    def trace(self, message, **fields):
        return self._log(0, message, fields, sys._getframe(1))

    def debug(self, message, **fields):
        return self._log(1, message, fields, sys._getframe(1))

    def info(self, message, **fields):
        return self._log(2, message, fields, sys._getframe(1))

    def warn(self, message, **fields):
        return self._log(3, message, fields, sys._getframe(1))

    warning = warn

    def error(self, message, **fields):
        return self._log(4, message, fields, sys._getframe(1))

    def fatal(self, message, **fields):
        return self._log(5, message, fields, sys._getframe(1))

    critical = fatal

    def timer(self, message, level="INFO", **fields):
        """Context manager: on exit, log message with duration_ms (float, ms)."""
        return _Timer(self, message, level, fields)

    def measure(self, message=None, level="INFO"):
        """Decorator: log each call of the function with duration_ms; a call
        that raises is logged with error_with_trace and the exception goes on.
        Usable as @client.measure, @client.measure() or @client.measure("msg")."""
        if callable(message):
            return self.measure()(message)

        def decorator(func):
            code = getattr(func, "__code__", None)
            where = {"function_name": getattr(func, "__name__", "?")}
            if code is not None:
                where["file_path"] = code.co_filename
                where["line"] = code.co_firstlineno

            @functools.wraps(func)
            def wrapper(*args, **kwargs):
                t0 = time.perf_counter()
                try:
                    result = func(*args, **kwargs)
                except Exception as e:
                    fields = dict(where)
                    fields["duration_ms"] = (time.perf_counter() - t0) * 1000.0
                    self._error_with_trace(message or "%s failed" % where["function_name"], e, fields, None)
                    raise
                fields = dict(where)
                fields["duration_ms"] = (time.perf_counter() - t0) * 1000.0
                self._log(level, message or "%s completed" % where["function_name"], fields, None)
                return result
            return wrapper
        return decorator

    def error_with_trace(self, message, exception=None, **fields):
        """ERROR record with stack_trace and error_type. exception defaults to
        the one being handled; without one, the current stack is sent."""
        return self._error_with_trace(message, exception, fields, sys._getframe(1))

    def _error_with_trace(self, message, exception, fields, frame, level=ERROR):
        if exception is None:
            exception = sys.exc_info()[1]
        fields = dict(fields)
        if exception is not None:
            fields.setdefault("stack_trace", "".join(
                traceback.format_exception(type(exception), exception, exception.__traceback__)))
            fields.setdefault("error_type", type(exception).__name__)
            tb = exception.__traceback__
            if tb is not None:
                while tb.tb_next is not None:
                    tb = tb.tb_next
                # where the exception was raised, as the seed client reported it
                fields.setdefault("function_name", tb.tb_frame.f_code.co_name)
                fields.setdefault("file_path", tb.tb_frame.f_code.co_filename)
                fields.setdefault("line", tb.tb_lineno)
        else:
            fields.setdefault("stack_trace", "".join(traceback.format_stack(frame)))
        return self._log(level, message, fields, frame)

    @staticmethod
    def context(**fields):
        """Context manager: attach fields (trace_id, user_id, session_id, ...)
        to every record sent inside it, from this thread or asyncio task
        (contextvars). Nestable; inner values win; a field given in a call
        wins over both."""
        return _ContextScope(_context, fields)

    def flush(self):
        """Nothing is queued in the process: every call has already been handed
        to agentd (or counted as dropped). Kept for the seed API."""
        return None

    def close(self):
        """Close the socket and restore the global hooks. Further calls are
        counted as dropped."""
        self.disable_global_error_handler()
        with self._lock:
            self._closed = True
            s, self._sock = self._sock, None
        if s is not None:
            s.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    # -- global error handler -----------------------------------------------

    def enable_global_error_handler(self):
        """Log every uncaught exception (main thread and other threads) as an
        ERROR record, then call the hooks that were there before."""
        if self._hooks is not None:
            return
        prev_sys = sys.excepthook
        prev_thr = getattr(threading, "excepthook", None)
        state = {"on": True}

        def sys_hook(et, ev, tb):
            if state["on"] and not issubclass(et, KeyboardInterrupt):
                self._log_uncaught(et, ev, tb, "Uncaught exception")
            prev_sys(et, ev, tb)

        def thread_hook(args):
            if state["on"] and args.exc_type is not SystemExit:
                name = args.thread.name if args.thread is not None else "?"
                self._log_uncaught(args.exc_type, args.exc_value, args.exc_traceback,
                                   "Uncaught exception in thread %s" % name)
            prev_thr(args)

        sys.excepthook = sys_hook
        if prev_thr is not None:
            threading.excepthook = thread_hook
        self._hooks = (state, prev_sys, sys_hook, prev_thr, thread_hook)

    def disable_global_error_handler(self):
        """Restore the hooks found by enable_global_error_handler(). A hook
        installed on top of ours since then stays; ours becomes a pass-through."""
        if self._hooks is None:
            return
        state, prev_sys, sys_hook, prev_thr, thread_hook = self._hooks
        self._hooks = None
        state["on"] = False
        if sys.excepthook is sys_hook:
            sys.excepthook = prev_sys
        if prev_thr is not None and threading.excepthook is thread_hook:
            threading.excepthook = prev_thr

    def _log_uncaught(self, et, ev, tb, message):
        try:
            if ev is None:
                ev = et()
            if ev.__traceback__ is None and tb is not None:
                ev = ev.with_traceback(tb)
            self._error_with_trace("%s: %s: %s" % (message, et.__name__, ev) if str(ev) else
                                   "%s: %s" % (message, et.__name__), ev, {}, None)
        except Exception:  # never make a crash worse
            pass


def _fast_fields_safe(fields, out):
    """Like _fast_fields for any value types (setup time, not a hot path)."""
    n = 0
    for key, value in fields.items():
        tv = _typed(key, value)
        if tv is None:
            continue
        fb = _field_bytes(tv[1], tv[0], tv[2])
        if fb is None:
            continue
        out.append(fb)
        n += 1
    return n


# ---- logging integration ----------------------------------------------------------

# LogRecord attributes that are not extra fields
_RECORD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None)).keys()) | {
    "message", "asctime", "taskName"}


def _logging_level(levelno):
    if levelno >= logging.CRITICAL:
        return FATAL
    if levelno >= logging.ERROR:
        return ERROR
    if levelno >= logging.WARNING:
        return WARN
    if levelno >= logging.INFO:
        return INFO
    if levelno >= logging.DEBUG:
        return DEBUG
    return TRACE


class AgentHandler(logging.Handler):
    """A logging.Handler that sends each record to agentd.

    Levels: CRITICAL -> FATAL, ERROR -> ERROR, WARNING -> WARN, INFO -> INFO,
    DEBUG -> DEBUG, below DEBUG -> TRACE (custom levels to the nearest below).
    The message is record.getMessage() (or the formatter's output when one is
    set); the record's time, funcName, pathname and lineno become the record's
    time, function_name, file_path and line; the logger's name goes in
    `logger`; every `extra` field is sent with its type; exc_info becomes
    stack_trace and error_type.

    client: an agentlog.Client to share; else one is made from client_kwargs
    and closed with the handler.
    """

    def __init__(self, client=None, level=logging.NOTSET, **client_kwargs):
        super().__init__(level)
        self._own = client is None
        self.client = client if client is not None else Client(**client_kwargs)

    def emit(self, record):
        try:
            message = self.format(record) if self.formatter is not None else record.getMessage()
            fields = {"function_name": record.funcName, "file_path": record.pathname,
                      "line": record.lineno, "logger": record.name}
            for key, value in record.__dict__.items():
                if key not in _RECORD_ATTRS and key[:1] != "_":
                    fields[key] = value
            if record.exc_info and record.exc_info[1] is not None:
                et, ev, tb = record.exc_info
                fields.setdefault("stack_trace", "".join(traceback.format_exception(et, ev, tb)))
                fields.setdefault("error_type", et.__name__)
            elif record.stack_info:
                fields.setdefault("stack_trace", record.stack_info)
            self.client._log(_logging_level(record.levelno), message, fields, None,
                             int(record.created * 1e9))
        except Exception:
            self.handleError(record)

    def close(self):
        try:
            if self._own:
                self.client.close()
        finally:
            super().close()
