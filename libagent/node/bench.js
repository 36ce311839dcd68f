#!/usr/bin/env node
'use strict';
/*
 * Cost per call and loss of the Node.js client against a local reader.
 *
 *   node libagent/node/bench.js [seconds=2] [rates=5000,20000,50000,100000] [--socket PATH] [--json]
 *
 * A reader child process listens on a stream socket and drains it, counting
 * length-prefixed frames (agentd's stream ingest without the rest of the
 * pipeline). For each rate the client logs records paced to that rate, in
 * slices of 1 ms between event-loop turns, timing each call; the reader
 * reports what arrived. Prints p50 / p99 microseconds per call and the loss.
 * With --socket, records go to that stream socket instead (a running agentd:
 * tests/bench/shims_e2e.py counts what lands in PostgreSQL) and what arrived
 * is not known here; --json prints one JSON object with every run.
 */
const { fork } = require('child_process');
const fs = require('fs');
const os = require('os');
const path = require('path');
const { performance } = require('perf_hooks');

if (process.argv[2] === '--reader') {
  const net = require('net');
  const sockPath = process.argv[3];
  let frames = 0;
  const server = net.createServer((c) => {
    let carry = null;
    c.on('data', (d) => {
      let b = carry ? Buffer.concat([carry, d]) : d;
      let o = 0;
      while (b.length - o >= 4) {
        const n = b.readUInt32LE(o);
        if (b.length - o - 4 < n) break;
        o += 4 + n;
        frames++;
      }
      carry = o < b.length ? b.subarray(o) : null;
    });
  });
  server.listen(sockPath, () => process.send({ ready: true }));
  process.on('message', (m) => {
    if (m.count) process.send({ frames });
  });
  return;
}

const { createLogClient } = require('./index.js');

function startReader(sockPath) {
  return new Promise((resolve) => {
    const child = fork(__filename, ['--reader', sockPath]);
    child.once('message', () => resolve(child));
  });
}

function askCount(child) {
  return new Promise((resolve) => {
    child.once('message', (m) => resolve(m.frames));
    child.send({ count: true });
  });
}

async function run(rate, seconds, sockPath, external) {
  const reader = external ? null : await startReader(sockPath);
  const log = createLogClient({ socketPath: sockPath, service: 'bench', environment: 'test' });
  await new Promise((r) => setTimeout(r, 100)); /* connected */
  const total = Math.floor(rate * seconds);
  const lat = new Float64Array(total);
  const fields = { user_id: 'u-42', path: '/api/pay', status: 200, ms: 12.5 };
  const t0 = performance.now();
  let i = 0;
  await new Promise((resolve) => {
    function slice() {
      const sliceEnd = performance.now() + 1;
      while (i < total) {
        const now = performance.now();
        if (now >= sliceEnd) break;
        const due = t0 + (i * 1000) / rate;
        if (now < due) continue;
        const a = performance.now();
        log.info('request handled', fields);
        lat[i] = performance.now() - a;
        i++;
      }
      if (i < total) setImmediate(slice);
      else resolve();
    }
    slice();
  });
  const elapsed = (performance.now() - t0) / 1000;
  await log.flush();
  await new Promise((r) => setTimeout(r, 300));
  const got = reader ? await askCount(reader) : null;
  const dropped = log.droppedTotal;
  await log.close();
  if (reader) reader.kill();
  lat.sort();
  return {
    rate, sent: total, got, elapsed, dropped,
    p50: lat[total >> 1] * 1000, p99: lat[Math.floor(total * 0.99)] * 1000,
  };
}

async function main() {
  const argv = process.argv.slice(2);
  const flag = (name) => {
    const i = argv.indexOf(name);
    if (i < 0) return undefined;
    const v = name === '--json' ? true : argv[i + 1];
    argv.splice(i, name === '--json' ? 1 : 2);
    return v;
  };
  const external = flag('--socket');
  const json = flag('--json') === true;
  const seconds = Number(argv[0] || 2);
  const rates = (argv[1] || '5000,20000,50000,100000').split(',').map(Number);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'agentlog-bench-'));
  const runs = [];
  if (!json) {
    console.log(`agentlog (Node ${process.version}) against ${external || 'a draining reader'}, ${seconds} s per rate`);
    console.log('  rate/s      sent    p50 us    p99 us      loss  dropped');
  }
  for (const rate of rates) {
    const sockPath = external || path.join(dir, `stream-${rate}.sock`);
    const r = await run(rate, seconds, sockPath, Boolean(external));
    runs.push({ rate, sent: r.sent, received: r.got, elapsed: r.elapsed, p50: r.p50, p99: r.p99,
      loss: r.got === null ? null : 1 - r.got / r.sent, dropped: r.dropped });
    if (json) continue;
    const loss = r.got === null ? '?' : `${(100 * (1 - r.got / r.sent)).toFixed(2)}%`;
    console.log(`${String(rate).padStart(8)} ${String(r.sent).padStart(9)} ${r.p50.toFixed(2).padStart(9)} ` +
      `${r.p99.toFixed(2).padStart(9)} ${loss.padStart(9)} ${String(r.dropped).padStart(8)}`);
    if (r.elapsed > seconds * 1.1) console.log(`         (could only reach ${Math.round(r.sent / r.elapsed)}/s)`);
    if (!external) {
      try { fs.unlinkSync(sockPath); } catch (e) { /* the reader is gone */ }
    }
  }
  fs.rmSync(dir, { recursive: true, force: true });
  if (json) console.log(JSON.stringify({ node: process.version, runs }));
}
main();
