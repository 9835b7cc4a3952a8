// Load generator for the wsroute benchmark suite: one scenario per run, one JSON line out.
//
//   node loadgen.mjs SCENARIO --url ws://127.0.0.1:PORT/ --server-pid PID [options]
//
// SCENARIO is rpc, fanout, idle or churn (see README.md). Every server speaks the same
// tiny protocol: {"type":"echo","id","data"} is answered {"type","id","ok":true,"data"};
// {"type":"blast","data"} is published to every connection as {"type","topic","data"}.
// All clients live in this process, so one clock times everything.
//
// CPU: utime+stime of the server (--server-pid) and of this process, read from
// /proc/<pid>/stat at the start and the end of the measured window, as a percentage
// of one core. Every wait is bounded: the whole run ends by --max-seconds.
//
// Progress lines go to stderr; the result is the last line on stdout. `idle` also
// prints {"event":"baseline"} after one warm-up connection came and went, and
// {"event":"ready"} once every connection is open; after each it waits for a line on
// stdin (or --hold seconds), so that the runner can read the server's RSS.

import { readFileSync } from "node:fs";
import { performance } from "node:perf_hooks";
import { createInterface } from "node:readline";
import WebSocket from "ws";

const DEFAULTS = {
  url: "ws://127.0.0.1:8000/",
  "server-pid": 0,
  "clk-tck": 100,
  "max-seconds": 300,
  // rpc
  clients: 50,
  seconds: 10,
  warmup: 1,
  // fanout
  subscribers: 500,
  broadcasts: 200,
  window: 8,
  stall: 10,
  "publish-seconds": 30,
  // idle
  connections: 1000,
  hold: 60,
  // churn
  workers: 16,
  // connection opening
  "open-concurrency": 64,
};

function parseArgs(argv) {
  const [scenario, ...rest] = argv;
  const opts = { ...DEFAULTS };
  for (let i = 0; i < rest.length; i += 2) {
    const key = rest[i].replace(/^--/, "");
    if (!(key in DEFAULTS) || i + 1 >= rest.length) {
      fail(`unknown or incomplete option ${rest[i]}`);
    }
    opts[key] = key === "url" ? rest[i + 1] : Number(rest[i + 1]);
    if (key !== "url" && !Number.isFinite(opts[key])) fail(`${rest[i]} needs a number`);
  }
  return { scenario, opts };
}

function fail(message) {
  process.stderr.write(`loadgen: ${message}\n`);
  process.exit(2);
}

function log(message) {
  process.stderr.write(`loadgen: ${message}\n`);
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// --- CPU accounting ---------------------------------------------------------------

function cpuTicks(pid) {
  if (!pid) return null;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return Number(fields[11]) + Number(fields[12]); // utime, stime (fields 14 and 15)
  } catch {
    return null;
  }
}

// Busy ticks of the whole machine (user + nice + system), to tell how much CPU other
// processes took during the window.
function machineTicks() {
  try {
    const fields = readFileSync("/proc/stat", "utf8").split("\n")[0].trim().split(/\s+/);
    return Number(fields[1]) + Number(fields[2]) + Number(fields[3]);
  } catch {
    return null;
  }
}

class CpuWindow {
  constructor(opts) {
    this.serverPid = opts["server-pid"];
    this.clkTck = opts["clk-tck"];
  }
  start() {
    this.t0 = performance.now();
    this.server0 = cpuTicks(this.serverPid);
    this.client0 = cpuTicks(process.pid);
    this.machine0 = machineTicks();
  }
  stop() {
    const seconds = (performance.now() - this.t0) / 1000;
    const pct = (before, after) =>
      before === null || after === null
        ? null
        : round((100 * (after - before)) / this.clkTck / seconds, 1);
    const server = pct(this.server0, cpuTicks(this.serverPid));
    const client = pct(this.client0, cpuTicks(process.pid));
    const machine = pct(this.machine0, machineTicks());
    const other =
      server === null || client === null || machine === null
        ? null
        : round(Math.max(0, machine - server - client), 1);
    return { server_cpu: server, client_cpu: client, other_cpu: other, window_s: round(seconds, 3) };
  }
}

// --- helpers ----------------------------------------------------------------------

function round(x, digits = 3) {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

function percentile(sorted, fraction) {
  if (sorted.length === 0) return null;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil(fraction * sorted.length) - 1));
  return round(sorted[i], 3);
}

function latencySummary(values) {
  const sorted = Float64Array.from(values).sort();
  return { p50_ms: percentile(sorted, 0.5), p99_ms: percentile(sorted, 0.99) };
}

function echoFrame(id, seq) {
  return JSON.stringify({ type: "echo", id, data: { seq, t: performance.now() } });
}

// Open one connection and complete one echo round trip on it, so the server has
// fully set it up (subscribed to its default topic) before the scenario starts.
function openConnection(url, timeoutMs = 15000) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { perMessageDeflate: false, handshakeTimeout: timeoutMs });
    const timer = setTimeout(() => {
      ws.terminate();
      reject(new Error("connection + first echo timed out"));
    }, timeoutMs);
    ws.once("error", (err) => {
      clearTimeout(timer);
      reject(err);
    });
    ws.once("open", () => ws.send(echoFrame(0, 0)));
    ws.once("message", (raw) => {
      clearTimeout(timer);
      const reply = JSON.parse(raw.toString());
      if (reply.ok !== true || reply.id !== 0) {
        ws.terminate();
        reject(new Error(`unexpected first reply: ${raw}`));
        return;
      }
      ws.removeAllListeners("error");
      ws.on("error", () => {});
      resolve(ws);
    });
  });
}

async function openMany(url, count, concurrency) {
  const sockets = [];
  let next = 0;
  const t0 = performance.now();
  async function worker() {
    while (next < count) {
      next += 1;
      sockets.push(await openConnection(url));
      if (sockets.length % 1000 === 0) log(`${sockets.length}/${count} connections open`);
    }
  }
  const workers = [];
  for (let i = 0; i < Math.min(concurrency, count); i += 1) workers.push(worker());
  try {
    await Promise.all(workers);
  } catch (err) {
    for (const ws of sockets) ws.terminate();
    throw new Error(`opening ${count} connections failed after ${sockets.length}: ${err.message}`);
  }
  return { sockets, openSeconds: (performance.now() - t0) / 1000 };
}

function closeAll(sockets) {
  for (const ws of sockets) ws.terminate();
}

// --- scenarios --------------------------------------------------------------------

// rpc: every client sends one echo, waits for the reply, sends the next.
async function rpc(opts) {
  const { sockets } = await openMany(opts.url, opts.clients, opts["open-concurrency"]);
  const cpu = new CpuWindow(opts);
  const latencies = [];
  let replies = 0;
  let errors = 0;
  let phase = "warmup";
  let inFlight = 0;
  let windowStart = 0;
  let windowEnd = 0;
  for (const [index, ws] of sockets.entries()) {
    let seq = 0;
    let sentAt = 0;
    const send = () => {
      seq += 1;
      sentAt = performance.now();
      inFlight += 1;
      ws.send(echoFrame(seq, index));
    };
    ws.on("message", (raw) => {
      inFlight -= 1;
      const now = performance.now();
      const reply = JSON.parse(raw.toString());
      if (reply.ok !== true || reply.id !== seq) errors += 1;
      if (phase === "measure" && sentAt >= windowStart && now <= windowEnd) {
        replies += 1;
        latencies.push(now - sentAt);
      }
      if (phase !== "drain") send();
    });
    send();
  }
  await sleep(opts.warmup * 1000);
  phase = "measure";
  windowStart = performance.now();
  windowEnd = windowStart + opts.seconds * 1000;
  cpu.start();
  await sleep(opts.seconds * 1000);
  const usage = cpu.stop();
  phase = "drain";
  const drainUntil = performance.now() + 5000;
  while (inFlight > 0 && performance.now() < drainUntil) await sleep(10);
  closeAll(sockets);
  const seconds = (windowEnd - windowStart) / 1000;
  return {
    clients: opts.clients,
    seconds: round(seconds, 3),
    replies,
    replies_per_s: round(replies / seconds, 1),
    ...latencySummary(latencies),
    errors: errors + inFlight,
    ...usage,
  };
}

// fanout: N subscribers and one publisher, all on the server's broadcast topic. The
// publisher sends `broadcasts` blasts (no id, so no acknowledgement), keeping at most
// `window` of them not yet received by every subscriber, and starts none after
// `publish-seconds` (then `capped` is true). Its own copies are ignored.
async function fanout(opts) {
  const n = opts.subscribers;
  const total = opts.broadcasts;
  const { sockets, openSeconds } = await openMany(opts.url, n, opts["open-concurrency"]);
  const publisher = await openConnection(opts.url);
  const cpu = new CpuWindow(opts);
  const counts = new Uint32Array(total);
  const latencies = new Float64Array(n * total);
  let received = 0;
  let complete = 0;
  let sent = 0;
  let duplicates = 0;
  let firstSend = 0;
  let lastReceipt = 0;
  let lastProgress = performance.now();
  let finish;
  const done = new Promise((resolve) => {
    finish = resolve;
  });

  let publishUntil = Infinity;
  const pump = () => {
    while (sent < total && sent - complete < opts.window) {
      if (sent === 0) {
        firstSend = performance.now();
        publishUntil = firstSend + opts["publish-seconds"] * 1000;
      } else if (performance.now() > publishUntil) {
        if (complete === sent) finish();
        return;
      }
      publisher.send(JSON.stringify({ type: "blast", data: { seq: sent, t: performance.now() } }));
      sent += 1;
    }
  };
  for (const ws of sockets) {
    ws.on("message", (raw) => {
      const now = performance.now();
      const event = JSON.parse(raw.toString());
      if (event.type !== "blast") return;
      const { seq, t } = event.data;
      if (received < latencies.length) latencies[received] = now - t;
      received += 1;
      lastReceipt = now;
      lastProgress = now;
      counts[seq] += 1;
      if (counts[seq] > n) duplicates += 1;
      if (counts[seq] === n) {
        complete += 1;
        if (complete === total) finish();
        else pump();
      }
    });
  }
  publisher.on("message", () => {});
  const watchdog = setInterval(() => {
    if (performance.now() - lastProgress > opts.stall * 1000) finish();
  }, 100);

  cpu.start();
  pump();
  await done;
  const usage = cpu.stop();
  clearInterval(watchdog);
  closeAll([...sockets, publisher]);
  const expected = n * sent;
  const seconds = Math.max(lastReceipt - firstSend, 1e-9) / 1000;
  return {
    subscribers: n,
    broadcasts: total,
    sent,
    capped: sent < total,
    window: opts.window,
    open_s: round(openSeconds, 2),
    expected,
    received,
    lost: expected - Math.min(received, expected),
    duplicates,
    seconds: round(seconds, 3),
    deliveries_per_s: round(received / seconds, 1),
    ...latencySummary(latencies.subarray(0, Math.min(received, expected))),
    ...usage,
  };
}

// idle: warm the server up with one connection, report "baseline" and wait for a
// line on stdin; open N connections (one echo each), report "ready", wait again.
const stdinLines = [];
let stdinWaiter = null;
let stdinReader = null;

function nextStdinLine(seconds) {
  if (stdinReader === null) {
    stdinReader = createInterface({ input: process.stdin });
    const deliver = (line) => {
      if (stdinWaiter) stdinWaiter(line);
      else stdinLines.push(line);
    };
    stdinReader.on("line", deliver);
    stdinReader.on("close", () => deliver(null));
  }
  if (stdinLines.length > 0) return Promise.resolve(stdinLines.shift());
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      stdinWaiter = null;
      resolve(null);
    }, seconds * 1000);
    stdinWaiter = (line) => {
      clearTimeout(timer);
      stdinWaiter = null;
      resolve(line);
    };
  });
}

function emit(event) {
  process.stdout.write(`${JSON.stringify(event)}\n`);
}

async function idle(opts) {
  const warm = await openConnection(opts.url);
  await new Promise((resolve) => {
    warm.once("close", resolve);
    warm.close(1000);
    setTimeout(resolve, 5000);
  });
  emit({ event: "baseline" });
  await nextStdinLine(opts.hold);
  const { sockets, openSeconds } = await openMany(
    opts.url,
    opts.connections,
    opts["open-concurrency"],
  );
  let closedEarly = 0;
  for (const ws of sockets) ws.on("close", () => (closedEarly += 1));
  emit({ event: "ready", connections: sockets.length });
  await nextStdinLine(opts.hold);
  const result = {
    connections: sockets.length,
    open_s: round(openSeconds, 2),
    opened_per_s: round(sockets.length / openSeconds, 1),
    closed_early: closedEarly,
  };
  closeAll(sockets);
  return result;
}

// churn: `workers` loops of connect, one echo, close handshake, for `seconds`.
async function churn(opts) {
  const cpu = new CpuWindow(opts);
  const latencies = [];
  let cycles = 0;
  let errors = 0;
  const firstError = [];
  const t0 = performance.now();
  const deadline = t0 + opts.seconds * 1000;

  const cycle = () =>
    new Promise((resolve) => {
      const start = performance.now();
      const ws = new WebSocket(opts.url, { perMessageDeflate: false, handshakeTimeout: 10000 });
      let ok = false;
      let settled = false;
      const timer = setTimeout(() => {
        ws.terminate();
        settle(new Error("cycle timed out"));
      }, 15000);
      const settle = (err) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        if (err) {
          errors += 1;
          if (firstError.length === 0) firstError.push(err.message);
        } else {
          cycles += 1;
          latencies.push(performance.now() - start);
        }
        resolve();
      };
      ws.on("error", (err) => {
        ws.terminate();
        if (!ok) settle(err);
      });
      ws.on("open", () => ws.send(echoFrame(1, 1)));
      ws.on("message", (raw) => {
        const reply = JSON.parse(raw.toString());
        if (reply.ok === true && reply.id === 1) {
          ok = true;
          ws.close(1000);
        }
      });
      ws.on("close", () => {
        if (ok) settle(null);
        else settle(new Error("closed before the reply"));
      });
    });

  async function worker() {
    while (performance.now() < deadline) await cycle();
  }
  cpu.start();
  const workers = [];
  for (let i = 0; i < opts.workers; i += 1) workers.push(worker());
  await Promise.all(workers);
  const usage = cpu.stop();
  const seconds = (performance.now() - t0) / 1000;
  return {
    workers: opts.workers,
    seconds: round(seconds, 3),
    cycles,
    cycles_per_s: round(cycles / seconds, 1),
    ...latencySummary(latencies),
    errors,
    first_error: firstError[0] ?? null,
    ...usage,
  };
}

// --- main -------------------------------------------------------------------------

const SCENARIOS = { rpc, fanout, idle, churn };

async function main() {
  const { scenario, opts } = parseArgs(process.argv.slice(2));
  if (!(scenario in SCENARIOS)) {
    fail(`usage: node loadgen.mjs {${Object.keys(SCENARIOS).join(",")}} [--option value ...]`);
  }
  const limit = setTimeout(() => {
    process.stderr.write(`loadgen: ${scenario} exceeded --max-seconds ${opts["max-seconds"]}\n`);
    process.exit(3);
  }, opts["max-seconds"] * 1000);
  limit.unref();
  const result = await SCENARIOS[scenario](opts);
  process.stdout.write(`${JSON.stringify({ scenario, ...result })}\n`);
  process.exit(0);
}

main().catch((err) => {
  process.stderr.write(`loadgen: ${err.stack || err}\n`);
  process.exit(1);
});
