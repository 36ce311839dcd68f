'use strict';
/* Test helpers: a decoder of the record protocol and a stream server standing
 * in for agentd's stream ingest. */
const net = require('net');
const fs = require('fs');
const os = require('os');
const path = require('path');

const TYPES = { 1: 'string', 2: 'int64', 3: 'double', 4: 'bool' };

class DecodeError extends Error {}

function decode(b, maxFrame = 131072) {
  if (b.length < 24) throw new DecodeError('short');
  if (b.length > maxFrame) throw new DecodeError('oversized');
  if (b[0] !== 0x41 || b[1] !== 0x47) throw new DecodeError('bad_magic');
  if (b[2] !== 1) throw new DecodeError('bad_version');
  if (b[3] > 5) throw new DecodeError('bad_level');
  const flags = b.readUInt16LE(4);
  if (flags & ~1) throw new DecodeError('bad_flags');
  const nfields = b.readUInt16LE(6);
  const msgLen = b.readUInt32LE(20);
  if (msgLen > b.length - 24) throw new DecodeError('truncated_message');
  let p = 24 + msgLen;
  const fields = [];
  for (let i = 0; i < nfields; i++) {
    if (b.length - p < 2) throw new DecodeError('truncated_field');
    const t = b[p];
    const klen = b[p + 1];
    if (!TYPES[t]) throw new DecodeError('bad_type');
    if (klen === 0) throw new DecodeError('bad_key');
    p += 2;
    if (b.length - p < klen) throw new DecodeError('truncated_field');
    const key = b.subarray(p, p + klen);
    p += klen;
    let value;
    if (t === 1) {
      if (b.length - p < 4) throw new DecodeError('truncated_field');
      const n = b.readUInt32LE(p);
      if (b.length - p - 4 < n) throw new DecodeError('truncated_field');
      value = b.subarray(p + 4, p + 4 + n);
      p += 4 + n;
    } else if (t === 4) {
      if (b.length - p < 1) throw new DecodeError('truncated_field');
      if (b[p] > 1) throw new DecodeError('bad_bool');
      value = b[p] === 1;
      p += 1;
    } else {
      if (b.length - p < 8) throw new DecodeError('truncated_field');
      value = t === 2 ? b.readBigInt64LE(p) : b.readDoubleLE(p);
      p += 8;
    }
    fields.push({ key, type: TYPES[t], value });
  }
  if (p !== b.length) throw new DecodeError('trailing_bytes');
  const rec = {
    level: b[3], flags, timeNs: b.readBigUInt64LE(8), dropped: b.readUInt32LE(16),
    message: b.subarray(24, 24 + msgLen).toString('utf8'), fields, f: {}, types: {},
  };
  for (const { key, type, value } of fields) {
    const k = key.toString('utf8');
    rec.f[k] = type === 'string' ? value.toString('utf8') : type === 'int64' ? Number(value) : value;
    rec.types[k] = type;
  }
  return rec;
}

function tmpSock(name = 'agentd.stream') {
  return path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'agentlog-node-')), name);
}

/* A stream server that splits length-prefixed frames and decodes them. */
class Server {
  constructor(sockPath) {
    this.path = sockPath;
    this.records = [];
    this.waiters = [];
    this.conns = new Set();
    this.paused = false;
  }

  listen() {
    this.server = net.createServer((c) => {
      this.conns.add(c);
      if (this.paused) c.pause();
      let carry = Buffer.alloc(0);
      c.on('data', (d) => {
        carry = Buffer.concat([carry, d]);
        while (carry.length >= 4) {
          const n = carry.readUInt32LE(0);
          if (carry.length < 4 + n) break;
          this.records.push(decode(carry.subarray(4, 4 + n)));
          carry = carry.subarray(4 + n);
        }
        this._wake();
      });
      c.on('close', () => this.conns.delete(c));
      c.on('error', () => {});
    });
    return new Promise((resolve) => this.server.listen(this.path, resolve));
  }

  _wake() {
    this.waiters = this.waiters.filter(([n, resolve]) => {
      if (this.records.length >= n) { resolve(this.records.slice(0, n)); return false; }
      return true;
    });
  }

  /* Resolves with the first n records (rejects after ms). */
  wait(n, ms = 3000) {
    if (this.records.length >= n) return Promise.resolve(this.records.slice(0, n));
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`got ${this.records.length} of ${n} records`)), ms);
      this.waiters.push([n, (r) => { clearTimeout(t); resolve(r); }]);
    });
  }

  async next() {
    const n = this.taken = (this.taken || 0) + 1;
    const recs = await this.wait(n);
    return recs[n - 1];
  }

  close() {
    for (const c of this.conns) c.destroy();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}

module.exports = { decode, DecodeError, Server, tmpSock };
