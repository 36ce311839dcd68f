'use strict';
/*
 * agentlog for Node.js: send structured log records to the local agentd.
 *
 *   const { createLogClient } = require('agentlog');
 *   const log = createLogClient({ service: 'payments' });
 *   log.info('paid', { user_id: 'u-42', cents: 1250 });
 *
 * Owns: the JavaScript encoder of the version-1 record protocol
 * (proto/PROTOCOL.md) and one connection to agentd's stream socket per client,
 * frames preceded by a u32 little-endian length.
 * Limits: frames of at most 131072 bytes (a larger record is cut and flagged
 * TRUNCATED); a bounded write buffer (maxBufferBytes, 4 MiB by default).
 * Failure: a call never throws because of the daemon and never waits. Records
 * past the buffer bound (daemon behind or absent) are dropped and counted;
 * the count travels in the `dropped` header field of the next record. The
 * connection is retried with backoff (100 ms doubling to 5 s). The socket and
 * every timer are unref'd: the logger never keeps the process alive. Node 18+,
 * no dependencies. The library prints nothing.
 */

const net = require('net');
const { performance } = require('perf_hooks');
const { AsyncLocalStorage } = require('async_hooks');

const HDR_SIZE = 24;
const MAX_FRAME = 131072;
const MAX_KEY = 255;
const MAX_FIELDS = 65535;
const F_TRUNCATED = 1;
const T_STRING = 1;
const T_INT64 = 2;
const T_DOUBLE = 3;
const T_BOOL = 4;
const U32_MAX = 0xffffffff;
const TWO32 = 4294967296;
const DEFAULT_STREAM_SOCKET = '/run/agentd/agentd.stream';

const LEVEL_NAMES = ['TRACE', 'DEBUG', 'INFO', 'WARN', 'ERROR', 'FATAL'];
/* The alias table of PROTOCOL.md, "Levels and aliases" (case-insensitive). */
const LEVEL_ALIASES = Object.freeze({
  trace: 0,
  debug: 1,
  info: 2, information: 2, notice: 2,
  warn: 3, warning: 3,
  error: 4, err: 4,
  fatal: 5, critical: 5, crit: 5, alert: 5, emerg: 5, emergency: 5, panic: 5,
});
/* syslog priorities 0..7, given as a one-digit string */
const SYSLOG_LEVELS = [5, 5, 5, 4, 3, 2, 2, 1];

const levelLookup = new Map();
for (const [name, lv] of Object.entries(LEVEL_ALIASES)) {
  levelLookup.set(name, lv);
  levelLookup.set(name.toUpperCase(), lv);
}
SYSLOG_LEVELS.forEach((lv, i) => levelLookup.set(String(i), lv));

/**
 * Level number (0..5) for a name, alias or syslog priority string ("warning",
 * "CRIT", "4"), or for a level number 0..5; -1 otherwise.
 */
function parseLevel(level) {
  if (typeof level === 'number') return Number.isInteger(level) && level >= 0 && level <= 5 ? level : -1;
  if (typeof level !== 'string') return -1;
  let lv = levelLookup.get(level);
  if (lv === undefined && level.length <= 16) lv = levelLookup.get(level.toLowerCase());
  return lv === undefined ? -1 : lv;
}

/* ---- encoding ------------------------------------------------------------ */

/* Longest prefix of b (at most n bytes, n < b.length) that does not end inside
 * a UTF-8 sequence: the rule of the C encoder. */
function utf8Cut(b, n) {
  let i = n;
  while (i > 0 && n - i < 4 && (b[i] & 0xc0) === 0x80) i--;
  return (b[i] & 0xc0) === 0x80 ? n : i;
}

function toBuf(s) {
  if (Buffer.isBuffer(s)) return s;
  if (s instanceof Uint8Array) return Buffer.from(s.buffer, s.byteOffset, s.byteLength);
  return Buffer.from(String(s), 'utf8');
}

const TYPE_NAMES = { string: T_STRING, int64: T_INT64, double: T_DOUBLE, bool: T_BOOL };

function writeInt64(buf, off, v) {
  if (typeof v === 'bigint') {
    buf.writeBigInt64LE(BigInt.asIntN(64, v), off);
    return;
  }
  const hi = Math.floor(v / TWO32);
  buf.writeUInt32LE(v - hi * TWO32, off);
  buf.writeInt32LE(hi, off + 4);
}

function fieldBytes(type, key, value) {
  const kb = toBuf(key);
  if (kb.length === 0 || kb.length > MAX_KEY) return null;
  let out;
  switch (type) {
    case T_STRING: {
      const vb = toBuf(value);
      out = Buffer.allocUnsafe(2 + kb.length + 4 + vb.length);
      out.writeUInt32LE(vb.length, 2 + kb.length);
      vb.copy(out, 6 + kb.length);
      break;
    }
    case T_INT64:
      out = Buffer.allocUnsafe(2 + kb.length + 8);
      writeInt64(out, 2 + kb.length, value);
      break;
    case T_DOUBLE:
      out = Buffer.allocUnsafe(2 + kb.length + 8);
      out.writeDoubleLE(value, 2 + kb.length);
      break;
    case T_BOOL:
      out = Buffer.allocUnsafe(2 + kb.length + 1);
      out[2 + kb.length] = value ? 1 : 0;
      break;
    default:
      throw new TypeError(`unknown field type ${type}`);
  }
  out[0] = type;
  out[1] = kb.length;
  kb.copy(out, 2);
  return out;
}

/**
 * Encode one frame exactly as PROTOCOL.md (and the C encoder) does.
 * fields: [key, type, value] triples in order (type 1..4 or 'string',
 * 'int64', 'double', 'bool'); strings may be strings or Buffers; int64 values
 * numbers or bigints; timeNs a bigint or number. A record above MAX_FRAME is
 * cut (message at a UTF-8 boundary, then each field that does not fit is
 * skipped) and flagged TRUNCATED.
 */
function encodeFrame(level, message, fields = [], timeNs = nowNs(), dropped = 0, flags = 0) {
  let msg = message == null ? Buffer.alloc(0) : toBuf(message);
  if (msg.length > MAX_FRAME - HDR_SIZE) {
    msg = msg.subarray(0, utf8Cut(msg, MAX_FRAME - HDR_SIZE));
    flags |= F_TRUNCATED;
  }
  const parts = [null, msg];
  let size = HDR_SIZE + msg.length;
  let n = 0;
  for (const [key, t, value] of fields) {
    const type = typeof t === 'string' ? TYPE_NAMES[t] : t;
    const fb = fieldBytes(type, key, value);
    if (fb === null || n >= MAX_FIELDS || size + fb.length > MAX_FRAME) {
      flags |= F_TRUNCATED;
      continue;
    }
    parts.push(fb);
    size += fb.length;
    n++;
  }
  const h = Buffer.alloc(HDR_SIZE);
  h[0] = 0x41;
  h[1] = 0x47;
  h[2] = 1;
  h[3] = level;
  h.writeUInt16LE(flags, 4);
  h.writeUInt16LE(n, 6);
  h.writeBigUInt64LE(BigInt(timeNs), 8);
  h.writeUInt32LE(Math.min(dropped, U32_MAX), 16);
  h.writeUInt32LE(msg.length, 20);
  parts[0] = h;
  return Buffer.concat(parts, size);
}

/* [key, type, value] for a JS value, null when it is left out (undefined,
 * null, functions, symbols). number -> INT64 when Number.isSafeInteger, else
 * DOUBLE; bigint -> INT64 (beyond int64: its decimal string); boolean -> BOOL;
 * string -> STRING; Buffer -> STRING (raw bytes); Error -> its stack; any
 * other object -> JSON.stringify. */
function typed(key, v) {
  switch (typeof v) {
    case 'string':
      return [key, T_STRING, v];
    case 'number':
      return [key, Number.isSafeInteger(v) ? T_INT64 : T_DOUBLE, v];
    case 'boolean':
      return [key, T_BOOL, v];
    case 'bigint':
      return BigInt.asIntN(64, v) === v ? [key, T_INT64, v] : [key, T_STRING, v.toString()];
    case 'object': {
      if (v === null) return null;
      if (Buffer.isBuffer(v)) return [key, T_STRING, v];
      if (v instanceof Error) return [key, T_STRING, String(v.stack || v)];
      let s;
      try {
        s = JSON.stringify(v, (k, x) => (typeof x === 'bigint' ? x.toString() : x));
      } catch (e) {
        s = undefined;
      }
      return [key, T_STRING, s === undefined ? String(v) : s];
    }
    default:
      return null;
  }
}

/* Wall-clock time in ns, as a double (sub-µs precision is below what a double
 * holds at this magnitude; good to ~0.25 µs). Follows Date.now() when the
 * clock steps. */
let clockBase = Date.now() - performance.now();
let clockChecked = 0;
function nowMs() {
  const p = performance.now();
  if (p - clockChecked > 1000) {
    clockChecked = p;
    const base = Date.now() - p;
    if (Math.abs(base - clockBase) > 1) clockBase = base;
  }
  return clockBase + p;
}
function nowNs() {
  return BigInt(Math.round(nowMs() * 1e3)) * 1000n;
}

/* ---- the client ------------------------------------------------------------ */

const STAGE_SIZE = 512 * 1024; /* holds the largest frame plus a tick's worth */
const STAGE_LOW = MAX_FRAME + 4; /* a frame is started only with this much room */
const userContext = new AsyncLocalStorage();
const requestContext = new AsyncLocalStorage();
const DEFAULT_KEYS = new Set(['service', 'environment', 'service_version', 'log_type']);

class LogClient {
  /**
   * options: socketPath ($AGENT_STREAM_SOCKET, then /run/agentd/agentd.stream),
   * service (SERVICE_NAME), environment (ENVIRONMENT, then NODE_ENV),
   * serviceVersion (SERVICE_VERSION), logType (LOG_TYPE): defaults for every
   * record, left out when unset (the server's defaults apply);
   * enableGlobalErrorHandler (or ENABLE_GLOBAL_ERROR_HANDLER=true);
   * maxBufferBytes (4 MiB): bound of what waits for the socket;
   * autoCaller (false): add function_name / file_path / line from the
   * caller's stack (costs a stack capture per call);
   * stallTimeoutMs (1000): a connection on which nothing could be written for
   * that long is dropped (its queued records counted) and retried, so that a
   * daemon that stopped reading never holds the process's exit up for longer.
   * The seed's transport options (batchSize, flushInterval,
   * enableCompression, ...) are accepted and ignored: agentd does that now.
   */
  constructor(serverUrl, options) {
    if (serverUrl !== null && typeof serverUrl === 'object' && options === undefined) {
      options = serverUrl;
      serverUrl = undefined;
    }
    options = options || {};
    const env = process.env;
    this.serverUrl = serverUrl || env.LOG_SERVER_URL || null; /* kept for the seed API; unused */
    this.socketPath = options.socketPath || env.AGENT_STREAM_SOCKET || DEFAULT_STREAM_SOCKET;
    this.service = options.service || env.SERVICE_NAME || null;
    this.environment = options.environment || env.ENVIRONMENT || env.NODE_ENV || null;
    this.serviceVersion = options.serviceVersion || env.SERVICE_VERSION || null;
    this.logType = options.logType || env.LOG_TYPE || null;
    this.maxBufferBytes = Math.max(options.maxBufferBytes || 4 * 1024 * 1024, 2 * STAGE_LOW);
    this.autoCaller = options.autoCaller === true;
    this.stallTimeoutMs = options.stallTimeoutMs || 1000;
    this._writesDone = 0;
    this._stallTimer = null;
    this.dropped = 0; /* not handed over since the last record that was */
    this.droppedTotal = 0; /* since the client was created */

    this._defaults = [];
    if (this.service) this._defaults.push(['service', T_STRING, this.service]);
    if (this.environment) this._defaults.push(['environment', T_STRING, this.environment]);
    if (this.serviceVersion) this._defaults.push(['service_version', T_STRING, this.serviceVersion]);
    if (this.logType) this._defaults.push(['log_type', T_STRING, this.logType]);
    this._defaultsBlob = Buffer.concat(this._defaults.map((f) => fieldBytes(f[1], f[0], f[2])));
    this._defaultsN = this._defaults.length;
    this._keyCache = new Map(); /* key -> encoded key bytes */

    this._stage = Buffer.allocUnsafe(STAGE_SIZE);
    this._pos = 0; /* bytes staged */
    this._frames = 0; /* frames staged */
    this._scheduled = false;
    this._pending = []; /* [Buffer, frames] written while disconnected */
    this._pendingBytes = 0;
    this._sock = null;
    this._connected = false;
    this._closed = false;
    this._backoff = 100;
    this._retryTimer = null;
    this._flushImmediate = () => {
      this._scheduled = false;
      this._flushStage();
    };
    this._handlers = null;
    this._connect();
    const geh = options.enableGlobalErrorHandler;
    if (geh === true || (geh === undefined && /^(1|true|yes|on)$/i.test(env.ENABLE_GLOBAL_ERROR_HANDLER || ''))) {
      this._installGlobalHandlers();
    }
  }

  /* -- connection --------------------------------------------------------- */

  _connect() {
    if (this._closed || this._sock) return;
    const sock = net.createConnection({ path: this.socketPath });
    this._sock = sock;
    sock.unref();
    sock.setNoDelay && sock.setNoDelay(true);
    sock.on('connect', () => {
      if (this._sock !== sock) return;
      this._connected = true;
      this._backoff = 100;
      const pending = this._pending;
      this._pending = [];
      this._pendingBytes = 0;
      for (const [chunk, frames] of pending) this._write(chunk, frames);
      this._flushStage();
    });
    sock.on('error', () => {}); /* 'close' follows */
    sock.on('close', () => {
      if (this._sock !== sock) return;
      this._sock = null;
      this._connected = false;
      if (!this._closed) this._scheduleReconnect();
    });
    /* agentd never answers; a read keeps the socket from being half-open forever */
    sock.on('data', () => {});
  }

  _scheduleReconnect() {
    if (this._retryTimer) return;
    const delay = this._backoff;
    this._backoff = Math.min(this._backoff * 2, 5000);
    this._retryTimer = setTimeout(() => {
      this._retryTimer = null;
      this._connect();
    }, delay);
    this._retryTimer.unref();
  }

  _write(chunk, frames) {
    const sock = this._sock;
    sock.write(chunk, (err) => {
      if (err) this._countDrop(frames);
      else this._writesDone++;
    });
    if (!this._stallTimer && sock.writableLength > 0) this._armStall(sock, this._writesDone);
  }

  /*
   * A write that makes no progress for stallTimeoutMs (agentd alive but not
   * reading) would keep the process alive: libuv waits for every pending
   * write. Give up on that connection: the frames still queued are counted
   * as dropped and the connection is retried with backoff.
   */
  _armStall(sock, doneBefore) {
    this._stallTimer = setTimeout(() => {
      this._stallTimer = null;
      if (this._sock !== sock || sock.writableLength === 0) return;
      if (this._writesDone === doneBefore) sock.destroy();
      else this._armStall(sock, this._writesDone);
    }, this.stallTimeoutMs);
    this._stallTimer.unref();
  }

  _countDrop(n) {
    this.dropped += n;
    this.droppedTotal += n;
  }

  /* Hand the staged frames to the socket (or keep them for the connection). */
  _flushStage() {
    if (this._pos === 0) return;
    const chunk = Buffer.allocUnsafe(this._pos);
    this._stage.copy(chunk, 0, 0, this._pos);
    const frames = this._frames;
    this._pos = 0;
    this._frames = 0;
    if (this._connected) {
      this._write(chunk, frames);
    } else {
      this._pending.push([chunk, frames]);
      this._pendingBytes += chunk.length;
    }
  }

  _buffered() {
    return this._pos + this._pendingBytes + (this._connected ? this._sock.writableLength : 0);
  }

  /* -- encoding ----------------------------------------------------------------- */

  _key(k) {
    let kb = this._keyCache.get(k);
    if (kb === undefined) {
      kb = Buffer.from(k, 'utf8');
      if (kb.length === 0 || kb.length > MAX_KEY) kb = null;
      if (this._keyCache.size < 4096) this._keyCache.set(k, kb);
    }
    return kb;
  }

  /**
   * Encode one record into the stage. level: 0..5; fields: a plain object or
   * undefined. Returns true when the record was accepted.
   */
  _emit(level, message, fields, caller) {
    const ms = nowMs();
    if (this._closed) {
      this._countDrop(1);
      return false;
    }
    if (typeof message !== 'string') message = message === undefined || message === null ? '' : String(message);
    const ctx1 = requestContext.getStore();
    const ctx2 = userContext.getStore();
    if (ctx1 !== undefined || ctx2 !== undefined) fields = Object.assign({}, ctx2, ctx1, fields);
    if (this._buffered() + STAGE_LOW > this.maxBufferBytes) {
      /* cheap pre-check; the exact size is checked below */
      if (this._buffered() + 4 + HDR_SIZE + message.length * 3 > this.maxBufferBytes) {
        this._countDrop(1);
        return false;
      }
    }
    if (STAGE_SIZE - this._pos < STAGE_LOW) this._flushStage();
    const start = this._pos;
    const buf = this._stage;
    const limit = start + 4 + MAX_FRAME;
    let p = start + 4 + HDR_SIZE;
    const d = this.dropped;
    let n = 0;
    let useDefaults = true;
    let slow = false;
    /* message */
    if (message.length * 3 > MAX_FRAME - HDR_SIZE && Buffer.byteLength(message) > MAX_FRAME - HDR_SIZE) slow = true;
    else p += buf.write(message, p);
    const msgLen = p - start - 4 - HDR_SIZE;
    if (!slow && fields) {
      for (const k in fields) {
        const v = fields[k];
        let t;
        switch (typeof v) {
          case 'string': t = T_STRING; break;
          case 'number': t = Number.isSafeInteger(v) ? T_INT64 : T_DOUBLE; break;
          case 'boolean': t = T_BOOL; break;
          case 'undefined': case 'function': case 'symbol': continue;
          default:
            if (v === null) continue;
            slow = true;
        }
        if (slow) break;
        if (DEFAULT_KEYS.has(k)) useDefaults = false;
        if (caller && (k === 'function_name' || k === 'file_path' || k === 'line')) caller[k] = undefined;
        const kb = this._key(k);
        if (kb === null || p + 2 + kb.length + 8 > limit) { slow = true; break; }
        buf[p] = t;
        buf[p + 1] = kb.length;
        p += 2 + kb.copy(buf, p + 2);
        if (t === T_STRING) {
          if (p + 4 + v.length * 3 > limit && p + 4 + Buffer.byteLength(v) > limit) { slow = true; break; }
          const len = buf.write(v, p + 4);
          buf.writeUInt32LE(len, p);
          p += 4 + len;
        } else if (t === T_INT64) {
          const hi = Math.floor(v / TWO32);
          buf.writeUInt32LE(v - hi * TWO32, p);
          buf.writeInt32LE(hi, p + 4);
          p += 8;
        } else if (t === T_DOUBLE) {
          buf.writeDoubleLE(v, p);
          p += 8;
        } else {
          buf[p++] = v ? 1 : 0;
        }
        n++;
      }
    }
    if (!slow && caller) {
      for (const k of ['function_name', 'file_path']) {
        const v = caller[k];
        if (typeof v !== 'string') continue;
        const kb = this._key(k);
        if (p + 6 + kb.length + v.length * 3 > limit) { slow = true; break; }
        buf[p] = T_STRING;
        buf[p + 1] = kb.length;
        p += 2 + kb.copy(buf, p + 2);
        const len = buf.write(v, p + 4);
        buf.writeUInt32LE(len, p);
        p += 4 + len;
        n++;
      }
      if (!slow && typeof caller.line === 'number') {
        if (p + 14 > limit) slow = true;
        else {
          buf[p] = T_INT64;
          buf[p + 1] = 4;
          buf.write('line', p + 2, 'latin1');
          buf.writeUInt32LE(caller.line, p + 6);
          buf.writeInt32LE(0, p + 10);
          p += 14;
          n++;
        }
      }
    }
    if (!slow && useDefaults && this._defaultsN) {
      if (p + this._defaultsBlob.length > limit) slow = true;
      else {
        p += this._defaultsBlob.copy(buf, p);
        n += this._defaultsN;
      }
    }
    if (slow || n > MAX_FIELDS) return this._emitSlow(level, message, fields, caller, ms);
    const frameLen = p - start - 4;
    if (this._buffered() + frameLen + 4 > this.maxBufferBytes) {
      this._countDrop(1);
      return false;
    }
    buf.writeUInt32LE(frameLen, start);
    const h = start + 4;
    buf[h] = 0x41;
    buf[h + 1] = 0x47;
    buf[h + 2] = 1;
    buf[h + 3] = level;
    buf[h + 4] = 0;
    buf[h + 5] = 0;
    buf.writeUInt16LE(n, h + 6);
    const ns = ms * 1e6;
    const hi = Math.floor(ns / TWO32);
    buf.writeUInt32LE(ns - hi * TWO32, h + 8);
    buf.writeUInt32LE(hi, h + 12);
    buf.writeUInt32LE(d > U32_MAX ? U32_MAX : d, h + 16);
    buf.writeUInt32LE(msgLen, h + 20);
    this._accept(p, d);
    return true;
  }

  /* The general path: bigint and object values, odd keys, records to cut. */
  _emitSlow(level, message, fields, caller, ms) {
    const triples = [];
    let useDefaults = true;
    const rest = [];
    if (fields) {
      for (const k in fields) {
        const tv = typed(k, fields[k]);
        if (tv === null) continue;
        if (DEFAULT_KEYS.has(k)) useDefaults = false;
        if (caller && (k === 'function_name' || k === 'file_path' || k === 'line')) caller[k] = undefined;
        rest.push(tv);
      }
    }
    if (useDefaults) for (const f of this._defaults) triples.push(f);
    if (caller) {
      if (typeof caller.function_name === 'string') triples.push(['function_name', T_STRING, caller.function_name]);
      if (typeof caller.file_path === 'string') triples.push(['file_path', T_STRING, caller.file_path]);
      if (typeof caller.line === 'number') triples.push(['line', T_INT64, caller.line]);
    }
    for (const tv of rest) triples.push(tv);
    const d = this.dropped;
    const frame = encodeFrame(level, message, triples, BigInt(Math.round(ms * 1e3)) * 1000n, d);
    if (this._buffered() + frame.length + 4 > this.maxBufferBytes) {
      this._countDrop(1);
      return false;
    }
    if (STAGE_SIZE - this._pos < frame.length + 4) this._flushStage();
    const start = this._pos;
    this._stage.writeUInt32LE(frame.length, start);
    frame.copy(this._stage, start + 4);
    this._accept(start + 4 + frame.length, d);
    return true;
  }

  _accept(end, carried) {
    this._pos = end;
    this._frames++;
    if (carried) this.dropped -= carried;
    if (!this._scheduled) {
      this._scheduled = true;
      setImmediate(this._flushImmediate);
    }
  }

  _caller() {
    const saved = Error.prepareStackTrace;
    const savedLimit = Error.stackTraceLimit;
    let site;
    try {
      Error.stackTraceLimit = 1;
      Error.prepareStackTrace = (e, stack) => stack;
      const holder = {};
      Error.captureStackTrace(holder, this._callerAnchor);
      site = holder.stack && holder.stack[0];
    } finally {
      Error.prepareStackTrace = saved;
      Error.stackTraceLimit = savedLimit;
    }
    if (!site) return null;
    return {
      function_name: site.getFunctionName() || site.getMethodName() || '<anonymous>',
      file_path: site.getFileName() || undefined,
      line: site.getLineNumber() || undefined,
    };
  }

  /* -- public API ------------------------------------------------------------- */

  /**
   * Send one record at level (a name, an alias, a syslog priority string or
   * a number 0..5). An unknown level name is sent as INFO with the name in a
   * `level` field (agentd keeps it in metadata.level).
   */
  log(level, message, fields) {
    let lv = parseLevel(level);
    if (lv < 0) {
      fields = Object.assign({ level: String(level) }, fields);
      lv = 2;
    }
    return this._emitCaller(lv, message, fields, this.log);
  }

  _emitCaller(lv, message, fields, anchor) {
    let caller = null;
    if (this.autoCaller ? !(fields && fields.autoCaller === false) : fields && fields.autoCaller === true) {
      this._callerAnchor = anchor;
      caller = this._caller();
    }
    if (fields && fields.autoCaller !== undefined) {
      fields = Object.assign({}, fields);
      delete fields.autoCaller;
    }
    return this._emit(lv, message, fields, caller);
  }

  trace(message, fields) { return this._emitCaller(0, message, fields, this.trace); }
  debug(message, fields) { return this._emitCaller(1, message, fields, this.debug); }
  info(message, fields) { return this._emitCaller(2, message, fields, this.info); }
  warn(message, fields) { return this._emitCaller(3, message, fields, this.warn); }
  error(message, fields) { return this._emitCaller(4, message, fields, this.error); }
  fatal(message, fields) { return this._emitCaller(5, message, fields, this.fatal); }

  /** Start time (ms) for endTimer(). */
  startTimer() {
    return performance.now();
  }

  /** Log message with duration_ms measured since startTimer(). */
  endTimer(startTime, level, message, fields) {
    const duration = performance.now() - startTime;
    return this.log(level, message, Object.assign({}, fields, { duration_ms: duration }));
  }

  /**
   * Run fn and log its duration (duration_ms); a promise is followed. A throw
   * or rejection is logged with errorWithTrace and passed on.
   */
  measure(fn, message = null, level = 'INFO') {
    const t0 = performance.now();
    const name = fn.name || 'anonymous';
    const done = (res) => {
      this.log(level, message || `${name} completed`, { duration_ms: performance.now() - t0, function_name: name });
      return res;
    };
    const failed = (err) => {
      this.errorWithTrace(message || `${name} failed`, err, { duration_ms: performance.now() - t0, function_name: name });
      throw err;
    };
    let result;
    try {
      result = fn();
    } catch (err) {
      failed(err);
    }
    if (result && typeof result.then === 'function') return result.then(done, failed);
    return done(result);
  }

  /** ERROR record with stack_trace and error_type (the error's name). */
  errorWithTrace(message, error = null, fields = {}) {
    return this._emit(4, message, errorFields(error, fields, this.errorWithTrace), null);
  }

  /**
   * Resolves when everything logged so far has been handed to the socket (or
   * counted as dropped), or after timeoutMs (1000) with agentd unreachable.
   * Never rejects.
   */
  flush(timeoutMs = 1000) {
    this._flushStage();
    if (!this._connected && this._pendingBytes === 0) return Promise.resolve();
    return new Promise((resolve) => {
      /* ref'd: a caller awaiting flush() is not cut off by the process
       * exiting underneath it (everything else is unref'd); bounded by
       * timeoutMs */
      const timer = setTimeout(finish, timeoutMs);
      let done = false;
      function finish() {
        if (done) return;
        done = true;
        clearTimeout(timer);
        resolve();
      }
      const check = () => {
        if (this._connected && this._pendingBytes === 0) {
          if (this._sock.writableLength === 0) finish();
          else this._sock.write(Buffer.alloc(0), finish);
        } else if (!done) {
          const t = setTimeout(check, 10);
          t.unref();
        }
      };
      check();
    });
  }

  /** Flush (bounded by timeoutMs), close the connection, remove the global handlers. */
  async close(timeoutMs = 1000) {
    if (this._closed) return;
    this._removeGlobalHandlers();
    await this.flush(timeoutMs);
    this._closed = true;
    if (this._retryTimer) {
      clearTimeout(this._retryTimer);
      this._retryTimer = null;
    }
    if (this._stallTimer) {
      clearTimeout(this._stallTimer);
      this._stallTimer = null;
    }
    const sock = this._sock;
    this._sock = null;
    this._connected = false;
    if (this._pending.length) {
      for (const [, frames] of this._pending) this._countDrop(frames);
      this._pending = [];
      this._pendingBytes = 0;
    }
    if (sock) {
      await new Promise((resolve) => {
        /* ref'd while closing, so that the code after `await close()` runs;
         * the timer bounds it */
        const t = setTimeout(() => sock.destroy(), timeoutMs);
        sock.once('close', () => {
          clearTimeout(t);
          resolve();
        });
        sock.end();
      });
    }
  }

  /*
   * Write what is staged now, synchronously (used when the process is about to
   * die). Also before Node has seen the connection complete: a Unix socket's
   * connect() finishes at once in the kernel, so a crash at start-up, before
   * the first event-loop turn, is still logged. Not when an asynchronous write
   * is under way (the bytes would interleave).
   */
  flushSync() {
    const sock = this._sock;
    if (!sock || this._closed || (this._connected && sock.writableLength !== 0)) return false;
    const fd = sock._handle && sock._handle.fd;
    if (typeof fd !== 'number' || fd < 0) return false;
    const chunks = this._connected ? [] : this._pending.map((p) => p[0]);
    if (this._pos) chunks.push(this._stage.subarray(0, this._pos));
    if (chunks.length === 0) return false;
    const data = chunks.length === 1 ? chunks[0] : Buffer.concat(chunks);
    const frames = this._frames + (this._connected ? 0 : this._pending.reduce((n, p) => n + p[1], 0));
    const fs = require('fs');
    let off = 0;
    const deadline = Date.now() + 200;
    while (off < data.length && Date.now() < deadline) {
      try {
        off += fs.writeSync(fd, data, off, data.length - off);
      } catch (e) {
        if (e.code !== 'EAGAIN') break;
      }
    }
    if (off === 0) return false;
    this._pos = 0;
    this._frames = 0;
    if (!this._connected) {
      this._pending = [];
      this._pendingBytes = 0;
    }
    if (off < data.length) {
      /* a frame cut in the middle: this connection cannot be used again */
      this._countDrop(frames);
      sock.destroy();
      return false;
    }
    return true;
  }

  /* -- global error handler ---------------------------------------------------------- */

  _installGlobalHandlers() {
    if (this._handlers) return;
    /*
     * 'uncaughtExceptionMonitor' sees every uncaught exception, and unhandled
     * rejections in Node's default mode (they are raised as uncaught
     * exceptions), without changing what Node does next: the process still
     * prints the error and exits non-zero unless the application has its own
     * 'uncaughtException' handler. The record is written synchronously.
     */
    const monitor = (err, origin) => {
      const dies = process.listenerCount('uncaughtException') === 0;
      const rejection = origin === 'unhandledRejection';
      const fields = { origin: rejection ? 'unhandledRejection' : 'uncaughtException' };
      const r = rejection && !(err instanceof Error) ? typed('reason', err) : null;
      if (r) fields.reason = r[2];
      const what = err instanceof Error ? `${err.name}: ${err.message}` : String(err);
      this._emit(dies ? 5 : 4, `${rejection ? 'Unhandled promise rejection' : 'Uncaught exception'}: ${what}`,
        errorFields(err, fields, null), null);
      this.flushSync();
    };
    const handlers = { uncaughtExceptionMonitor: monitor };
    /* Modes in which a rejection is not raised: listen for it directly. */
    const mode = rejectionMode();
    if (mode === 'warn' || mode === 'none' || mode === 'warn-with-error-code') {
      handlers.unhandledRejection = (reason) => {
        const what = reason instanceof Error ? `${reason.name}: ${reason.message}` : String(reason);
        this._emit(4, `Unhandled promise rejection: ${what}`,
          errorFields(reason, { origin: 'unhandledRejection' }, null), null);
        if (mode === 'warn-with-error-code') process.exitCode = 1;
      };
    }
    for (const [ev, fn] of Object.entries(handlers)) process.on(ev, fn);
    this._handlers = handlers;
  }

  _removeGlobalHandlers() {
    if (!this._handlers) return;
    for (const [ev, fn] of Object.entries(this._handlers)) process.removeListener(ev, fn);
    this._handlers = null;
  }

  /* -- context (static, as in the seed) ------------------------------------------------ */

  /** Run fn with fields (path, method, ...) added to every record it logs. */
  static runWithContext(context, fn) {
    return requestContext.run(context, fn);
  }

  static getRequestContext() {
    return requestContext.getStore();
  }

  /** Run fn with user fields (user_id, trace_id, ...); nested calls merge. */
  static runWithUserContext(context, fn) {
    return userContext.run(Object.assign({}, userContext.getStore(), context), fn);
  }

  static getUserContext() {
    return userContext.getStore();
  }

  static setUserContext(context) {
    userContext.enterWith(context);
  }

  static clearUserContext() {
    userContext.enterWith(undefined);
  }
}

function rejectionMode() {
  const args = process.execArgv.concat((process.env.NODE_OPTIONS || '').split(/\s+/));
  for (const a of args) {
    const m = /^--unhandled-rejections=(.*)$/.exec(a);
    if (m) return m[1];
  }
  return 'throw';
}

function errorFields(error, fields, anchor) {
  const out = Object.assign({}, fields);
  if (error instanceof Error || (error && typeof error.stack === 'string')) {
    if (out.stack_trace === undefined) out.stack_trace = String(error.stack || error);
    if (out.error_type === undefined) out.error_type = error.name || (error.constructor && error.constructor.name) || 'Error';
    if (out.function_name === undefined || out.file_path === undefined) {
      /* where it was thrown: the first "at fn (file:line:col)" of the stack */
      const m = /\n\s+at (?:(.+?) \()?(.+?):(\d+):\d+\)?/.exec(String(error.stack));
      if (m) {
        if (out.function_name === undefined && m[1]) out.function_name = m[1];
        if (out.file_path === undefined) out.file_path = m[2];
        if (out.line === undefined) out.line = Number(m[3]);
      }
    }
  } else if (error !== null && error !== undefined) {
    if (out.stack_trace === undefined) {
      const holder = {};
      Error.captureStackTrace(holder, anchor || errorFields);
      out.stack_trace = holder.stack;
    }
    if (out.error_type === undefined) out.error_type = typeof error;
  } else if (out.stack_trace === undefined) {
    const holder = {};
    Error.captureStackTrace(holder, anchor || errorFields);
    out.stack_trace = holder.stack;
  }
  return out;
}

/**
 * createLogClient(options) or the seed's createLogClient(serverUrl, options);
 * serverUrl is accepted and ignored (agentd knows where to send).
 */
function createLogClient(serverUrl, options) {
  return new LogClient(serverUrl, options);
}

module.exports = {
  createLogClient,
  LogClient,
  WorkerThreadsLogClient: LogClient,
  parseLevel,
  encodeFrame,
  LEVEL_NAMES,
  LEVEL_ALIASES,
  MAX_FRAME,
  DEFAULT_STREAM_SOCKET,
};
