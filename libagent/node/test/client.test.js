'use strict';
const test = require('node:test');
const assert = require('node:assert');
const fs = require('fs');
const path = require('path');
const { spawn } = require('child_process');
const agentlog = require('..');
const { createLogClient, encodeFrame, parseLevel, LEVEL_ALIASES } = agentlog;
const { decode, DecodeError, Server, tmpSock } = require('./helpers.js');

const REPO = path.resolve(__dirname, '..', '..', '..');
const VECTORS = path.join(REPO, 'proto', 'vectors');
const vectorNames = fs.existsSync(VECTORS)
  ? fs.readdirSync(VECTORS).filter((f) => f.endsWith('.json')).map((f) => f.slice(0, -5)).sort()
  : [];

function str(v) {
  return typeof v === 'object' ? Buffer.from(v.hex, 'hex') : Buffer.from(v, 'utf8');
}
function value(type, v) {
  if (type === 'string') return str(v);
  if (type === 'int64') return BigInt(v);
  if (type === 'double') return typeof v === 'string' ? { nan: NaN, inf: Infinity, '-inf': -Infinity }[v] : v;
  return v;
}

test('golden vectors encode byte for byte', { skip: vectorNames.length === 0 && 'no vectors yet' }, () => {
  for (const name of vectorNames.filter((n) => !n.startsWith('bad_'))) {
    const v = JSON.parse(fs.readFileSync(path.join(VECTORS, `${name}.json`), 'utf8'));
    const fields = v.fields.map((f) => [str(f.key), f.type, value(f.type, f.value)]);
    const frame = encodeFrame(v.level, str(v.message), fields, BigInt(v.time_ns), Number(v.dropped), v.flags);
    assert.deepStrictEqual(frame, fs.readFileSync(path.join(VECTORS, `${name}.bin`)), name);
  }
});

test('bad vectors are rejected with their reason', { skip: vectorNames.length === 0 && 'no vectors yet' }, () => {
  for (const name of vectorNames.filter((n) => n.startsWith('bad_'))) {
    const v = JSON.parse(fs.readFileSync(path.join(VECTORS, `${name}.json`), 'utf8'));
    assert.throws(() => decode(fs.readFileSync(path.join(VECTORS, `${name}.bin`))),
      (e) => e instanceof DecodeError && e.message === v.error, name);
  }
});

test('frame layout by hand', () => {
  const frame = encodeFrame(2, 'paid', [['user_id', 'string', 'u-42'], ['amount', 'int64', 1250],
    ['ratio', 'double', 0.25], ['ok', 'bool', true]], 1732800000123456789n, 3);
  const h = Buffer.alloc(24);
  h.write('AG', 0, 'latin1');
  h[2] = 1; h[3] = 2; h.writeUInt16LE(4, 6);
  h.writeBigUInt64LE(1732800000123456789n, 8); h.writeUInt32LE(3, 16); h.writeUInt32LE(4, 20);
  const i64 = Buffer.alloc(8); i64.writeBigInt64LE(1250n);
  const f64 = Buffer.alloc(8); f64.writeDoubleLE(0.25);
  const expect = Buffer.concat([h, Buffer.from('paid'), Buffer.from([1, 7]), Buffer.from('user_id'),
    Buffer.from([4, 0, 0, 0]), Buffer.from('u-42'), Buffer.from([2, 6]), Buffer.from('amount'), i64,
    Buffer.from([3, 5]), Buffer.from('ratio'), f64, Buffer.from([4, 2]), Buffer.from('ok'), Buffer.from([1])]);
  assert.deepStrictEqual(frame, expect);
});

test('alias table is the one of PROTOCOL.md', () => {
  const md = fs.readFileSync(path.join(REPO, 'proto', 'PROTOCOL.md'), 'utf8');
  const section = md.split('## Levels and aliases')[1].split('\n## ')[0];
  const names = {};
  for (const line of section.split('\n')) {
    const m = /^\|\s*(TRACE|DEBUG|INFO|WARN|ERROR|FATAL) \((\d)\)\s*\|(.*?)\|(.*)\|/.exec(line);
    if (!m) continue;
    for (const [, n] of m[3].matchAll(/`([^`]+)`/g)) names[n] = Number(m[2]);
    for (const [p] of m[4].matchAll(/\d/g)) assert.strictEqual(parseLevel(p), Number(m[2]), `syslog ${p}`);
  }
  assert.deepStrictEqual({ ...LEVEL_ALIASES }, names);
  for (const [given, lv] of [['WARNING', 3], ['Crit', 5], ['err', 4], [0, 0], [5, 5], ['verbose', -1], [6, -1], ['8', -1]]) {
    assert.strictEqual(parseLevel(given), lv, String(given));
  }
});

async function withServer(fn, options = {}) {
  const server = new Server(tmpSock());
  await server.listen();
  const log = createLogClient({ socketPath: server.path, ...options });
  try {
    await fn(log, server);
  } finally {
    await log.close();
    await server.close();
  }
}

test('records: levels, fields, types', () => withServer(async (log, server) => {
  const before = BigInt(Date.now()) * 1000000n;
  log.trace('t'); log.debug('d'); log.info('i'); log.warn('w'); log.error('e'); log.fatal('f');
  log.info('typed', { s: 'x', n: 42, neg: -7, big: 2 ** 60, frac: 0.5, b: false, bi: 12345678901234567n,
    huge: 2n ** 70n, o: { a: [1, 2] }, u: undefined, nul: null, d: new Date(0) });
  const recs = await server.wait(7);
  assert.deepStrictEqual(recs.slice(0, 6).map((r) => [r.level, r.message]),
    [[0, 't'], [1, 'd'], [2, 'i'], [3, 'w'], [4, 'e'], [5, 'f']]);
  const r = recs[6];
  assert.ok(r.timeNs >= before - 5000000n && r.timeNs <= BigInt(Date.now()) * 1000000n + 5000000n);
  assert.strictEqual(r.f.s, 'x');
  assert.strictEqual(r.types.n, 'int64'); assert.strictEqual(r.f.n, 42);
  assert.strictEqual(r.types.neg, 'int64'); assert.strictEqual(r.f.neg, -7);
  assert.strictEqual(r.types.big, 'double');
  assert.strictEqual(r.types.frac, 'double'); assert.strictEqual(r.f.frac, 0.5);
  assert.strictEqual(r.types.b, 'bool'); assert.strictEqual(r.f.b, false);
  assert.strictEqual(r.types.bi, 'int64');
  assert.strictEqual(r.fields.find((x) => x.key.toString() === 'bi').value, 12345678901234567n);
  assert.strictEqual(r.types.huge, 'string'); assert.strictEqual(r.f.huge, (2n ** 70n).toString());
  assert.strictEqual(r.f.o, '{"a":[1,2]}');
  assert.strictEqual(r.f.d, '"1970-01-01T00:00:00.000Z"');
  assert.ok(!('u' in r.f) && !('nul' in r.f));
}));

test('log() with aliases; unknown level kept as a field', () => withServer(async (log, server) => {
  log.log('warning', 'a'); log.log('CRITICAL', 'b'); log.log('3', 'c'); log.log('verbose', 'd');
  const r = await server.wait(4);
  assert.deepStrictEqual(r.map((x) => x.level), [3, 5, 4, 2]);
  assert.strictEqual(r[3].f.level, 'verbose');
  assert.ok(!('level' in r[0].f));
}));

test('defaults from options and environment; a field wins', async () => {
  const server = new Server(tmpSock());
  await server.listen();
  const saved = { ...process.env };
  Object.assign(process.env, { AGENT_STREAM_SOCKET: server.path, SERVICE_NAME: 'env-svc', ENVIRONMENT: 'staging',
    SERVICE_VERSION: 'v9', LOG_TYPE: 'WORKER' });
  try {
    const log = createLogClient('http://localhost:8000', { batchSize: 10 }); /* the seed's form */
    log.info('a');
    log.info('b', { service: 'given' });
    const [a, b] = await server.wait(2);
    assert.deepStrictEqual([a.f.service, a.f.environment, a.f.service_version, a.f.log_type],
      ['env-svc', 'staging', 'v9', 'WORKER']);
    assert.strictEqual(b.f.service, 'given');
    assert.strictEqual(b.fields.filter((x) => x.key.toString() === 'service').length, 1);
    await log.close();
    const log2 = createLogClient({ service: 'opt', environment: 'test' });
    log2.info('c');
    const c = (await server.wait(3))[2];
    assert.strictEqual(c.f.service, 'opt'); assert.strictEqual(c.f.environment, 'test');
    await log2.close();
  } finally {
    process.env = saved;
    await server.close();
  }
});

test('caller info on request; helpers', () => withServer(async (log, server) => {
  function namedCaller() { log.info('where', { autoCaller: true }); }
  namedCaller();
  let r = await server.next();
  assert.strictEqual(r.f.function_name, 'namedCaller');
  assert.strictEqual(r.f.file_path, __filename);
  assert.ok(r.f.line > 0 && !('autoCaller' in r.f));
  const t = log.startTimer();
  log.endTimer(t, 'DEBUG', 'timed', { rows: 2 });
  r = await server.next();
  assert.strictEqual(r.level, 1); assert.ok(r.f.duration_ms >= 0); assert.strictEqual(r.f.rows, 2);
  assert.strictEqual(log.measure(function work() { return 7; }), 7);
  r = await server.next();
  assert.strictEqual(r.message, 'work completed'); assert.strictEqual(r.f.function_name, 'work');
  await assert.rejects(log.measure(async function later() { throw new TypeError('no'); }, 'later op'));
  r = await server.next();
  assert.strictEqual(r.level, 4); assert.strictEqual(r.message, 'later op');
  assert.strictEqual(r.f.error_type, 'TypeError'); assert.match(r.f.stack_trace, /TypeError: no/);
  function thrower() { throw new RangeError('out'); }
  try { thrower(); } catch (e) { log.errorWithTrace('failed', e, { order: 1 }); }
  r = await server.next();
  assert.strictEqual(r.f.error_type, 'RangeError'); assert.strictEqual(r.f.function_name, 'thrower');
  assert.strictEqual(r.f.order, 1);
}, { autoCaller: false }));

test('user and request context', () => withServer(async (log, server) => {
  const C = agentlog.LogClient;
  await C.runWithUserContext({ user_id: 'u1', tenant: 't' }, async () => {
    await C.runWithUserContext({ user_id: 'u2' }, async () => {
      await new Promise((r) => setTimeout(r, 5));
      C.runWithContext({ path: '/pay' }, () => log.info('in', { tenant: 'given' }));
    });
  });
  log.info('out');
  const [a, b] = await server.wait(2);
  assert.deepStrictEqual([a.f.user_id, a.f.tenant, a.f.path], ['u2', 'given', '/pay']);
  assert.ok(!('user_id' in b.f));
}));

test('records past the buffer bound are dropped, counted and reported', async () => {
  const server = new Server(tmpSock());
  server.paused = true; /* accepts, never reads */
  await server.listen();
  const log = createLogClient({ socketPath: server.path, maxBufferBytes: 300000 });
  await new Promise((r) => setTimeout(r, 50));
  const big = 'x'.repeat(1000);
  let sent = 0;
  for (let round = 0; round < 50 && log.dropped === 0; round++) {
    for (let i = 0; i < 500; i++, sent++) log.info(big);
    await new Promise((r) => setImmediate(r));
  }
  assert.ok(log.dropped > 0, 'some records dropped');
  const dropped = log.dropped;
  for (const c of server.conns) c.resume();
  server.paused = false;
  const n = sent - dropped;
  await server.wait(n, 5000);
  log.info('after');
  await log.flush();
  const rec = await server.wait(n + 1);
  assert.strictEqual(rec[n].message, 'after');
  assert.strictEqual(rec[n].dropped, dropped);
  assert.strictEqual(log.dropped, 0);
  assert.strictEqual(log.droppedTotal, dropped);
  await log.close();
  await server.close();
});

test('reconnects when the socket is re-created', async () => {
  const sockPath = tmpSock();
  let server = new Server(sockPath);
  await server.listen();
  const log = createLogClient({ socketPath: sockPath });
  log.info('one');
  await server.wait(1);
  await server.close();
  await new Promise((r) => setTimeout(r, 50));
  log.info('while down'); /* kept in the bounded buffer until the daemon is back */
  server = new Server(sockPath);
  await server.listen();
  const recs = await server.wait(1, 4000);
  assert.strictEqual(recs[0].message, 'while down');
  log.info('two');
  assert.strictEqual((await server.wait(2))[1].message, 'two');
  await log.close();
  await server.close();
});

test('truncation of a large record', () => withServer(async (log, server) => {
  log.info('big', { blob: 'z'.repeat(200000), small: 'kept' });
  log.info('é'.repeat(70000));
  const [a, b] = await server.wait(2);
  assert.strictEqual(a.flags, 1); assert.ok(!('blob' in a.f)); assert.strictEqual(a.f.small, 'kept');
  assert.strictEqual(b.flags, 1); assert.ok(b.message.length < 70000 && !b.message.includes('\ufffd'));
}));

function runChild(code, env) {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['-e', code], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d) => { stderr += d; });
    const t = setTimeout(() => child.kill('SIGKILL'), 15000);
    child.on('exit', (code) => { clearTimeout(t); resolve({ code, stderr }); });
  });
}

test('global handler: uncaught exception and rejection logged, the process still dies', async () => {
  const server = new Server(tmpSock());
  await server.listen();
  const index = JSON.stringify(path.resolve(__dirname, '..', 'index.js'));
  const setup = `const log = require(${index}).createLogClient({ socketPath: ${JSON.stringify(server.path)}, enableGlobalErrorHandler: true });`;
  let r = await runChild(`${setup} setTimeout(() => { function crash() { throw new Error('kaboom'); } crash(); }, 100);`);
  assert.notStrictEqual(r.code, 0);
  assert.match(r.stderr, /kaboom/);
  let rec = (await server.wait(1))[0];
  assert.strictEqual(rec.level, 5);
  assert.strictEqual(rec.f.error_type, 'Error');
  assert.match(rec.f.stack_trace, /kaboom/);
  assert.strictEqual(rec.f.origin, 'uncaughtException');
  r = await runChild(`${setup} setTimeout(() => Promise.reject(new TypeError('nobody caught')), 100);`);
  assert.notStrictEqual(r.code, 0);
  rec = (await server.wait(2))[1];
  assert.strictEqual(rec.f.origin, 'unhandledRejection');
  assert.strictEqual(rec.f.error_type, 'TypeError');
  await server.close();
});

test('close() removes the global handlers', async () => {
  const before = process.listenerCount('uncaughtExceptionMonitor');
  const log = createLogClient({ socketPath: tmpSock(), enableGlobalErrorHandler: true });
  assert.strictEqual(process.listenerCount('uncaughtExceptionMonitor'), before + 1);
  await log.close();
  assert.strictEqual(process.listenerCount('uncaughtExceptionMonitor'), before);
});

test('the logger never holds the process up', async () => {
  const server = new Server(tmpSock());
  server.paused = true;
  await server.listen();
  const index = JSON.stringify(path.resolve(__dirname, '..', 'index.js'));
  const t0 = Date.now();
  /* one daemon that never reads, one that does not exist */
  const r = await runChild(`const { createLogClient } = require(${index});
    const a = createLogClient({ socketPath: ${JSON.stringify(server.path)} });
    const b = createLogClient({ socketPath: '/nonexistent/agentd.stream' });
    for (let i = 0; i < 20000; i++) { a.info('x'.repeat(200)); b.info('y'); }`);
  assert.strictEqual(r.code, 0, r.stderr);
  assert.ok(Date.now() - t0 < 5000);
  await server.close();
});
