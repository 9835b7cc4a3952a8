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
//
// --procs N (rpc, fanout, churn) runs the scenario in N processes: this one (part 0,
// the leader) starts N-1 copies of itself (parts 1..N-1, pinned to --cpus a,b,... in
// turn when given, else on this process's CPUs) and talks to them over Node's IPC
// channel. The clients, subscribers or workers are split between the parts; the
// fan-out publisher stays in the leader, which learns from every part when its
// subscribers have all received a broadcast. Every part starts its measured window on
// the leader's word and sends back its counts and its raw latency samples; the leader
// prints one line in the usual format: counts and rates summed, percentiles of the
// merged samples, server CPU from its own window, client CPU summed over the parts
// (client_core_cpu: the busiest CPU's share). Times that cross processes (fan-out's
// publish-to-receipt) use one clock: each part shifts performance.now() to the
// leader's time origin (--clock-origin).
//
// The wire (rpc, fanout, churn, idle): --payload N adds N catalogue items (about 130
// bytes of JSON each) to every echo and blast, so that messages reach permessage-
// deflate's threshold (1 KiB by default); 0, the default, sends the tiny {seq, t}.
// --msgpack F makes a share F of the connections (0 to 1; every second one for 0.5;
// the fan-out publisher speaks as the first subscriber does) offer the
// wsroute.v1.msgpack subprotocol and speak msgpack in binary frames (@msgpack/msgpack);
// the others speak JSON text. --deflate 1 offers permessage-deflate (ws's
// perMessageDeflate defaults: compression above 1 KiB). Each fails the run if the
// server does not accept it. rpc and fanout also count the TCP bytes their sockets
// read and wrote during the measured window (net.Socket bytesRead/bytesWritten, the
// socket of the upgrade's response): bytes per reply or delivery each way.

import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { performance } from "node:perf_hooks";
import { createInterface } from "node:readline";
import { decode as msgpackDecode, encode as msgpackEncode } from "@msgpack/msgpack";
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
  // the wire (see the top of this file)
  payload: 0,
  msgpack: 0,
  deflate: 0,
  // several processes (see the top of this file)
  procs: 1,
  cpus: "",
  part: 0,
  "clock-origin": 0,
};
const STRING_OPTIONS = new Set(["url", "cpus"]);

function parseArgs(argv) {
  const [scenario, ...rest] = argv;
  const opts = { ...DEFAULTS };
  for (let i = 0; i < rest.length; i += 2) {
    const key = rest[i].replace(/^--/, "");
    if (!(key in DEFAULTS) || i + 1 >= rest.length) {
      fail(`unknown or incomplete option ${rest[i]}`);
    }
    opts[key] = STRING_OPTIONS.has(key) ? rest[i + 1] : Number(rest[i + 1]);
    if (!STRING_OPTIONS.has(key) && !Number.isFinite(opts[key])) fail(`${rest[i]} needs a number`);
  }
  if (!Number.isInteger(opts.procs) || opts.procs < 1) fail("--procs needs a whole number >= 1");
  if (!Number.isInteger(opts.payload) || opts.payload < 0) fail("--payload needs a whole number");
  if (!(opts.msgpack >= 0 && opts.msgpack <= 1)) fail("--msgpack needs a share from 0 to 1");
  if (opts.deflate !== 0 && opts.deflate !== 1) fail("--deflate needs 0 or 1");
  return { scenario, opts };
}

let NAME = "loadgen";

function fail(message) {
  process.stderr.write(`${NAME}: ${message}\n`);
  process.exit(2);
}

function log(message) {
  process.stderr.write(`${NAME}: ${message}\n`);
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// --- one clock --------------------------------------------------------------------

// The leader's performance.now(). A part shifts its own by the difference between the
// two processes' time origins (both wall-clock readings taken at start-up), so a
// broadcast's send time can be compared with its receipt in another process.
let clockShift = 0;
const now = () => performance.now() + clockShift;

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

// The CPUs this process may run on ("1", "1-2"), to add up the parts by CPU.
function cpusAllowed() {
  try {
    const line = readFileSync("/proc/self/status", "utf8")
      .split("\n")
      .find((l) => l.startsWith("Cpus_allowed_list:"));
    return line ? line.split(":")[1].trim() : "?";
  } catch {
    return "?";
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
  // server_cpu, client_cpu, other_cpu, window_s as printed, plus machine_cpu (for
  // adding up several parts; not printed).
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
    return {
      server_cpu: server,
      client_cpu: client,
      other_cpu: other,
      window_s: round(seconds, 3),
      machine_cpu: machine,
    };
  }
}

// The CPU figures of a run made of `parts`: the leader's window for the server and
// the machine, the parts' own CPU added up (client_core_cpu: the most any one CPU set
// carried, which is what tells whether the client was the bottleneck).
function usageOf(parts) {
  const { machine_cpu: machine, ...usage } = parts[0].usage;
  if (parts.length === 1) return usage;
  const each = parts.map((part) => part.usage.client_cpu);
  const extra = { loadgens: parts.length, client_cpus: parts.map((part) => part.cpus) };
  if (each.some((value) => value === null)) {
    return { ...usage, client_cpu: null, other_cpu: null, client_core_cpu: null, ...extra };
  }
  const client = round(each.reduce((a, b) => a + b, 0), 1);
  const byCpus = new Map();
  for (const part of parts) {
    byCpus.set(part.cpus, (byCpus.get(part.cpus) ?? 0) + part.usage.client_cpu);
  }
  const other =
    usage.server_cpu === null || machine === null
      ? null
      : round(Math.max(0, machine - usage.server_cpu - client), 1);
  return {
    ...usage,
    client_cpu: client,
    other_cpu: other,
    client_core_cpu: round(Math.max(...byCpus.values()), 1),
    client_cpu_each: each,
    ...extra,
  };
}

// --- several processes ------------------------------------------------------------

// One end of an IPC channel: messages are {kind, ...}; next(kind) waits for the next
// one of that kind, on(kind, handler) takes every one of that kind as it comes.
class Channel {
  constructor(endpoint) {
    this.endpoint = endpoint;
    this.queue = [];
    this.waiters = [];
    this.handlers = new Map();
    endpoint.on("message", (message) => this.deliver(message));
  }
  deliver(message) {
    const handler = this.handlers.get(message.kind);
    if (handler) {
      handler(message);
      return;
    }
    const i = this.waiters.findIndex((waiter) => waiter.kind === message.kind);
    if (i >= 0) this.waiters.splice(i, 1)[0].resolve(message);
    else this.queue.push(message);
  }
  next(kind) {
    const i = this.queue.findIndex((message) => message.kind === kind);
    if (i >= 0) return Promise.resolve(this.queue.splice(i, 1)[0]);
    return new Promise((resolve) => this.waiters.push({ kind, resolve }));
  }
  on(kind, handler) {
    this.handlers.set(kind, handler);
    for (const message of this.queue.filter((m) => m.kind === kind)) handler(message);
    this.queue = this.queue.filter((m) => m.kind !== kind);
  }
  send(message, callback) {
    this.endpoint.send(message, callback);
  }
}

// The processes of one run. With --procs 1 it is this process alone and every method
// is a no-op, so the scenarios read the same either way.
class Team {
  constructor(opts, scenario) {
    this.size = opts.procs;
    this.part = opts.part;
    this.leader = opts.part === 0;
    this.parts = []; // the leader's channels to parts 1..N-1
    this.parent = null; // a part's channel to the leader
    this.finished = false;
    if (this.size === 1) return;
    if (!this.leader) {
      this.parent = new Channel(process);
      process.on("disconnect", () => {
        log("the leader went away");
        process.exit(1);
      });
      return;
    }
    const cpus = opts.cpus ? opts.cpus.split(",") : [];
    for (let part = 1; part < this.size; part += 1) {
      const args = [
        process.argv[1],
        scenario,
        ...process.argv.slice(3),
        "--part",
        String(part),
        "--clock-origin",
        String(performance.timeOrigin),
      ];
      const cpu = cpus.length > 0 ? cpus[part % cpus.length] : null;
      const child = spawn(
        cpu === null ? process.execPath : "taskset",
        cpu === null ? args : ["-c", cpu, process.execPath, ...args],
        { stdio: ["ignore", "ignore", "inherit", "ipc"], serialization: "advanced" },
      );
      const lost = (why) => {
        if (this.finished) return;
        process.stderr.write(`${NAME}: part ${part} ${why}\n`);
        process.exit(1);
      };
      child.on("error", (err) => lost(`could not start: ${err.message}`));
      child.on("exit", (code, signal) => {
        if (code !== 0) lost(`exited with ${code ?? signal}`);
      });
      this.parts.push(new Channel(child));
    }
  }
  // This process's share of `total` clients, subscribers or workers.
  share(total) {
    return Math.floor(total / this.size) + (this.part < total % this.size ? 1 : 0);
  }
  // Every part is set up: the leader waits for all, then says go.
  async ready() {
    if (this.size === 1) return;
    if (this.leader) {
      await Promise.all(this.parts.map((part) => part.next("ready")));
      for (const part of this.parts) part.send({ kind: "go" });
    } else {
      this.parent.send({ kind: "ready" });
      await this.parent.next("go");
    }
  }
  tellLeader(message, callback) {
    this.parent.send(message, callback);
  }
  tellParts(message) {
    for (const part of this.parts) part.send(message);
  }
  onParts(kind, handler) {
    for (const part of this.parts) part.on(kind, handler);
  }
  nextFromLeader(kind) {
    return this.parent.next(kind);
  }
  // The leader's own part first, then every other part's.
  async gather(own) {
    const others = await Promise.all(this.parts.map((part) => part.next("part")));
    this.finished = true;
    return [own, ...others.map((message) => message.part)];
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

// Percentiles of every part's samples taken together (not an average of percentiles).
function mergedLatencies(parts) {
  const all = new Float64Array(parts.reduce((n, part) => n + part.latencies.length, 0));
  let offset = 0;
  for (const part of parts) {
    all.set(part.latencies, offset);
    offset += part.latencies.length;
  }
  return latencySummary(all);
}

const sumOf = (parts, key) => parts.reduce((sum, part) => sum + part[key], 0);
const rate = (parts, key) => parts.reduce((sum, part) => sum + part[key] / part.seconds, 0);

// --- the wire ---------------------------------------------------------------------

const MSGPACK = "wsroute.v1.msgpack";
// From --payload, --msgpack and --deflate (set in main).
const WIRE = { items: null, msgpack: 0, deflate: false };

// A connection's message format: JSON text, or msgpack in binary frames.
const JSON_CODEC = {
  encode: (message) => JSON.stringify(message),
  decode: (raw) => JSON.parse(raw.toString()),
};
const MSGPACK_CODEC = {
  encode: (message) => msgpackEncode(message),
  decode: (raw) => msgpackDecode(raw),
};

// The format of connection `index`: msgpack for a share WIRE.msgpack of the indices,
// spread evenly (0.5: every second one, from the second on; 1: all).
function codecOf(index) {
  const share = WIRE.msgpack;
  return Math.floor((index + 1) * share) > Math.floor(index * share) ? MSGPACK_CODEC : JSON_CODEC;
}

// --payload N: N catalogue items, about 130 bytes of JSON each, the same list in every
// message (each message is compressed on its own, so repeating it gains deflate
// nothing). benchmarks/wire_cost.py and servers/wsroute_app.py's Item agree with it.
const TAGS = ["red", "new", "sale", "blue", "large"];

function itemsOf(n) {
  return Array.from({ length: n }, (_, k) => ({
    id: k + 1,
    sku: `SKU-${String(k + 1).padStart(6, "0")}`,
    name: `widget ${k + 1}`,
    price: (999 + 125 * k) / 100,
    stock: (7 * k) % 50,
    tags: [TAGS[k % 5], TAGS[(k + 2) % 5]],
    updated_at: `2026-12-04T18:${String(k % 60).padStart(2, "0")}:00Z`,
  }));
}

function stamp(seq) {
  return WIRE.items === null ? { seq, t: now() } : { seq, t: now(), items: WIRE.items };
}

function echoMessage(id, seq) {
  return { type: "echo", id, data: stamp(seq) };
}

// A new client connection in the format of connection `index`, offering
// permessage-deflate with --deflate 1. `ws.codec` is its format and `ws.tcp` its TCP
// socket once upgraded (the upgrade response's), for counting bytes.
function connect(url, index, timeoutMs) {
  const codec = codecOf(index);
  const ws = new WebSocket(url, codec === MSGPACK_CODEC ? [MSGPACK] : [], {
    perMessageDeflate: WIRE.deflate,
    handshakeTimeout: timeoutMs,
  });
  ws.codec = codec;
  ws.tcp = null;
  ws.once("upgrade", (response) => {
    ws.tcp = response.socket;
  });
  return ws;
}

// Why the opened `ws` is not what was asked for (a subprotocol or deflate the server
// did not accept), or null.
function refusal(ws) {
  if (ws.codec === MSGPACK_CODEC && ws.protocol !== MSGPACK) {
    return `the server did not select ${MSGPACK}`;
  }
  if (WIRE.deflate && ws.extensions !== "permessage-deflate") {
    return "the server did not accept permessage-deflate";
  }
  return null;
}

// TCP bytes the connections have read and written so far.
function wireBytes(sockets) {
  let read = 0;
  let written = 0;
  for (const ws of sockets) {
    read += ws.tcp?.bytesRead ?? 0;
    written += ws.tcp?.bytesWritten ?? 0;
  }
  return { read, written };
}

// --- connections ------------------------------------------------------------------

// Open connection `index` and complete one echo round trip on it, so the server has
// fully set it up (subscribed to its default topic) before the scenario starts.
function openConnection(url, index = 0, timeoutMs = 15000) {
  return new Promise((resolve, reject) => {
    const ws = connect(url, index, timeoutMs);
    const timer = setTimeout(() => {
      ws.terminate();
      reject(new Error("connection + first echo timed out"));
    }, timeoutMs);
    ws.once("error", (err) => {
      clearTimeout(timer);
      reject(err);
    });
    ws.once("open", () => {
      const why = refusal(ws);
      if (why !== null) {
        clearTimeout(timer);
        ws.terminate();
        reject(new Error(why));
        return;
      }
      ws.send(ws.codec.encode(echoMessage(0, 0)));
    });
    ws.once("message", (raw) => {
      clearTimeout(timer);
      const reply = ws.codec.decode(raw);
      if (reply.ok !== true || reply.id !== 0) {
        ws.terminate();
        reject(new Error(`unexpected first reply: ${JSON.stringify(reply).slice(0, 200)}`));
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
      const index = next;
      next += 1;
      sockets.push(await openConnection(url, index));
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
//
// Each scenario's `run` returns this process's part (counts, raw latencies, CPU);
// `summarise` turns the parts (one, or one per process) into the printed result.

// rpc: every client sends one echo, waits for the reply, sends the next. The wire
// bytes are those of the CPU window, divided by the replies received in it.
async function rpc(opts, team) {
  const clients = team.share(opts.clients);
  const { sockets } = await openMany(opts.url, clients, opts["open-concurrency"]);
  await team.ready();
  const cpu = new CpuWindow(opts);
  const latencies = [];
  let replies = 0;
  let errors = 0;
  let windowReplies = 0; // every reply received in the CPU window, for the bytes
  let counting = false;
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
      ws.send(ws.codec.encode(echoMessage(seq, index)));
    };
    ws.on("message", (raw) => {
      inFlight -= 1;
      const t = performance.now();
      const reply = ws.codec.decode(raw);
      if (counting) windowReplies += 1;
      if (reply.ok !== true || reply.id !== seq) errors += 1;
      if (phase === "measure" && sentAt >= windowStart && t <= windowEnd) {
        replies += 1;
        latencies.push(t - sentAt);
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
  const before = wireBytes(sockets);
  counting = true;
  await sleep(opts.seconds * 1000);
  counting = false;
  const after = wireBytes(sockets);
  const usage = cpu.stop();
  phase = "drain";
  const drainUntil = performance.now() + 5000;
  while (inFlight > 0 && performance.now() < drainUntil) await sleep(10);
  closeAll(sockets);
  return {
    clients,
    seconds: (windowEnd - windowStart) / 1000,
    replies,
    errors: errors + inFlight,
    latencies: Float64Array.from(latencies),
    usage,
    cpus: cpusAllowed(),
    // the wire, in the CPU window: bytes read (replies) and written (requests)
    down: after.read - before.read,
    up: after.written - before.written,
    wireOps: windowReplies,
  };
}

// Bytes on the wire per operation, each way (TCP payload: frames and their headers).
function wireSummary(parts, upOps = sumOf(parts, "wireOps")) {
  const ops = sumOf(parts, "wireOps");
  return {
    down_bytes_per_op: ops ? round(sumOf(parts, "down") / ops, 1) : null,
    up_bytes_per_op: upOps ? round(sumOf(parts, "up") / upOps, 1) : null,
  };
}

function rpcSummary(parts) {
  return {
    clients: sumOf(parts, "clients"),
    seconds: round(parts[0].seconds, 3),
    replies: sumOf(parts, "replies"),
    replies_per_s: round(rate(parts, "replies"), 1),
    ...mergedLatencies(parts),
    errors: sumOf(parts, "errors"),
    ...wireSummary(parts),
    ...usageOf(parts),
  };
}

// fanout: N subscribers and one publisher, all on the server's broadcast topic. The
// publisher sends `broadcasts` blasts (no id, so no acknowledgement), keeping at most
// `window` of them not yet received by every subscriber, and starts none after
// `publish-seconds` (then `capped` is true). Its own copies are ignored. With several
// processes the publisher is the leader's, each part tells the leader when its own
// subscribers have all received a broadcast, and the leader tells the parts when
// publishing is over. The wire bytes: what the subscribers read per delivery, what
// the publisher wrote per broadcast sent.
async function fanout(opts, team) {
  const n = team.share(opts.subscribers);
  const total = opts.broadcasts;
  const { sockets, openSeconds } = await openMany(opts.url, n, opts["open-concurrency"]);
  const publisher = team.leader ? await openConnection(opts.url) : null;
  await team.ready();
  const cpu = new CpuWindow(opts);
  const counts = new Uint32Array(total);
  const latencies = new Float64Array(n * total);
  const partsDone = new Uint16Array(total); // leader: parts whose subscribers all have it
  let received = 0;
  let complete = 0;
  let sent = 0;
  let duplicates = 0;
  let firstSend = 0;
  let lastReceipt = 0;
  let lastProgress = now();
  let finish;
  const done = new Promise((resolve) => {
    finish = resolve;
  });

  let publishUntil = Infinity;
  const pump = () => {
    while (sent < total && sent - complete < opts.window) {
      if (sent === 0) {
        firstSend = now();
        publishUntil = firstSend + opts["publish-seconds"] * 1000;
      } else if (now() > publishUntil) {
        if (complete === sent) finish();
        return;
      }
      publisher.send(publisher.codec.encode({ type: "blast", data: stamp(sent) }));
      sent += 1;
    }
  };
  // Leader: one more part has delivered broadcast `seq` to all its subscribers.
  const partDone = (seq) => {
    lastProgress = now();
    partsDone[seq] += 1;
    if (partsDone[seq] === team.size) {
      complete += 1;
      if (complete === total) finish();
      else pump();
    }
  };
  for (const ws of sockets) {
    ws.on("message", (raw) => {
      const t = now();
      const event = ws.codec.decode(raw);
      if (event.type !== "blast") return;
      const { seq } = event.data;
      if (received < latencies.length) latencies[received] = t - event.data.t;
      received += 1;
      lastReceipt = t;
      lastProgress = t;
      counts[seq] += 1;
      if (counts[seq] > n) duplicates += 1;
      if (counts[seq] === n) {
        if (team.leader) partDone(seq);
        else team.tellLeader({ kind: "done", seq });
      }
    });
  }
  let finished;
  let before;
  let published = 0;
  if (team.leader) {
    team.onParts("done", (message) => partDone(message.seq));
    publisher.on("message", () => {});
    const watchdog = setInterval(() => {
      if (now() - lastProgress > opts.stall * 1000) finish();
    }, 100);
    cpu.start();
    before = wireBytes(sockets);
    published = wireBytes([publisher]).written;
    pump();
    await done;
    clearInterval(watchdog);
    published = wireBytes([publisher]).written - published;
    finished = { sent };
    team.tellParts({ kind: "finish", sent });
  } else {
    cpu.start();
    before = wireBytes(sockets);
    finished = await team.nextFromLeader("finish");
  }
  const read = wireBytes(sockets).read - before.read;
  const usage = cpu.stop();
  closeAll(publisher ? [...sockets, publisher] : sockets);
  return {
    subscribers: n,
    broadcasts: total,
    sent: finished.sent,
    window: opts.window,
    open_s: openSeconds,
    received,
    duplicates,
    firstSend,
    lastReceipt,
    latencies: latencies.slice(0, Math.min(received, n * finished.sent)),
    usage,
    cpus: cpusAllowed(),
    down: read,
    up: published,
    wireOps: received,
  };
}

function fanoutSummary(parts) {
  const [leader] = parts;
  const expected = sumOf(parts, "subscribers") * leader.sent;
  const received = sumOf(parts, "received");
  const lastReceipt = Math.max(...parts.map((part) => part.lastReceipt));
  const seconds = Math.max(lastReceipt - leader.firstSend, 1e-9) / 1000;
  return {
    subscribers: sumOf(parts, "subscribers"),
    broadcasts: leader.broadcasts,
    sent: leader.sent,
    capped: leader.sent < leader.broadcasts,
    window: leader.window,
    open_s: round(Math.max(...parts.map((part) => part.open_s)), 2),
    expected,
    received,
    lost: expected - Math.min(received, expected),
    duplicates: sumOf(parts, "duplicates"),
    seconds: round(seconds, 3),
    deliveries_per_s: round(received / seconds, 1),
    ...mergedLatencies(parts),
    ...wireSummary(parts, leader.sent),
    ...usageOf(parts),
  };
}

// idle: warm the server up with one connection, report "baseline" and wait for a
// line on stdin; open N connections (one echo each), report "ready", wait again.
// Always one process.
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
async function churn(opts, team) {
  const workers = team.share(opts.workers);
  await team.ready();
  const cpu = new CpuWindow(opts);
  const latencies = [];
  let cycles = 0;
  let errors = 0;
  let opened = 0; // connections started, whose index picks their format
  const firstError = [];
  const t0 = performance.now();
  const deadline = t0 + opts.seconds * 1000;

  const cycle = () =>
    new Promise((resolve) => {
      const start = performance.now();
      const ws = connect(opts.url, opened, 10000);
      opened += 1;
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
      ws.on("open", () => {
        const why = refusal(ws);
        if (why !== null) {
          ws.terminate();
          settle(new Error(why));
          return;
        }
        ws.send(ws.codec.encode(echoMessage(1, 1)));
      });
      ws.on("message", (raw) => {
        const reply = ws.codec.decode(raw);
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
  const running = [];
  for (let i = 0; i < workers; i += 1) running.push(worker());
  await Promise.all(running);
  const usage = cpu.stop();
  return {
    workers,
    seconds: (performance.now() - t0) / 1000,
    cycles,
    errors,
    first_error: firstError[0] ?? null,
    latencies: Float64Array.from(latencies),
    usage,
    cpus: cpusAllowed(),
  };
}

function churnSummary(parts) {
  return {
    workers: sumOf(parts, "workers"),
    seconds: round(parts[0].seconds, 3),
    cycles: sumOf(parts, "cycles"),
    cycles_per_s: round(rate(parts, "cycles"), 1),
    ...mergedLatencies(parts),
    errors: sumOf(parts, "errors"),
    first_error: parts.map((part) => part.first_error).find((e) => e !== null) ?? null,
    ...usageOf(parts),
  };
}

// --- main -------------------------------------------------------------------------

const SCENARIOS = {
  rpc: { run: rpc, summarise: rpcSummary },
  fanout: { run: fanout, summarise: fanoutSummary },
  idle: { run: idle, summarise: ([result]) => result },
  churn: { run: churn, summarise: churnSummary },
};

async function main() {
  const { scenario, opts } = parseArgs(process.argv.slice(2));
  if (!(scenario in SCENARIOS)) {
    fail(`usage: node loadgen.mjs {${Object.keys(SCENARIOS).join(",")}} [--option value ...]`);
  }
  if (scenario === "idle" && opts.procs > 1) fail("idle runs in one process (no --procs)");
  const split = { rpc: "clients", fanout: "subscribers", churn: "workers" }[scenario];
  if (split && opts[split] < opts.procs) fail(`--procs ${opts.procs} needs ${opts.procs} ${split}`);
  if (opts.part > 0) NAME = `loadgen[${opts.part}]`;
  if (opts["clock-origin"]) clockShift = performance.timeOrigin - opts["clock-origin"];
  WIRE.items = opts.payload > 0 ? itemsOf(opts.payload) : null;
  WIRE.msgpack = opts.msgpack;
  WIRE.deflate = opts.deflate === 1;
  const limit = setTimeout(() => {
    process.stderr.write(`${NAME}: ${scenario} exceeded --max-seconds ${opts["max-seconds"]}\n`);
    process.exit(3);
  }, opts["max-seconds"] * 1000);
  limit.unref();
  const team = new Team(opts, scenario);
  const { run, summarise } = SCENARIOS[scenario];
  const part = await run(opts, team);
  if (!team.leader) {
    team.tellLeader({ kind: "part", part }, () => process.exit(0));
    return;
  }
  const parts = await team.gather(part);
  process.stdout.write(`${JSON.stringify({ scenario, ...summarise(parts) })}\n`);
  process.exit(0);
}

main().catch((err) => {
  process.stderr.write(`${NAME}: ${err.stack || err}\n`);
  process.exit(1);
});
