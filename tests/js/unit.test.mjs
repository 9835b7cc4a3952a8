// The client without a server: backoff, option checks, the ES2020 promise, and the
// orderings that a real server cannot produce on demand, on a scripted fake socket.

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";

import { parse } from "acorn";

import {
  ClosedError,
  HandlerError,
  RETRY_CODES,
  RETRY_STATUSES,
  backoffDelay,
  connect,
} from "../../wsroute/static/wsroute.js";
import { REPO, recordStates, recordingLogger, until } from "./helpers.mjs";

const SOURCE = join(REPO, "wsroute", "static", "wsroute.js");

/** A deterministic source of numbers in [0, 1) (mulberry32). */
function seeded(seed) {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A WebSocket the test drives: `accept()`, `receive(frame)`, `drop(code)`. */
class FakeSocket {
  static instances = [];

  constructor(url, protocols) {
    this.url = url;
    this.protocols = protocols;
    this.readyState = 0;
    this.sent = [];
    this.listeners = {};
    FakeSocket.instances.push(this);
  }

  static get last() {
    return FakeSocket.instances[FakeSocket.instances.length - 1];
  }

  addEventListener(type, fn) {
    (this.listeners[type] ??= []).push(fn);
  }

  send(data) {
    this.sent.push(JSON.parse(data));
  }

  close(code = 1005, reason = "") {
    if (this.readyState >= 2) return;
    this.readyState = 2;
    queueMicrotask(() => this.drop(code, reason));
  }

  fire(type, event) {
    for (const fn of this.listeners[type] ?? []) fn(event);
  }

  accept() {
    this.readyState = 1;
    this.fire("open", {});
  }

  receive(frame) {
    this.fire("message", { data: typeof frame === "string" ? frame : JSON.stringify(frame) });
  }

  drop(code = 1006, reason = "") {
    this.readyState = 3;
    this.fire("close", { code, reason });
  }
}

function fakeClient(t, options = {}) {
  FakeSocket.instances = [];
  const logger = recordingLogger();
  const client = connect("ws://fake.invalid/", {
    WebSocket: FakeSocket,
    logger,
    reconnect: { initial: 1, max: 2 },
    ...options,
  });
  t.after(() => client.close());
  return { client, logger, states: recordStates(client) };
}

test("the module is ES2020: no newer syntax", () => {
  parse(readFileSync(SOURCE, "utf8"), { ecmaVersion: 2020, sourceType: "module" });
});

test("backoff: full jitter within [0, min(max, initial * factor^(attempt-1))]", () => {
  const options = { initial: 100, max: 5000, factor: 2 };
  const random = seeded(42);
  for (let attempt = 1; attempt <= 12; attempt += 1) {
    const cap = Math.min(5000, 100 * 2 ** (attempt - 1));
    const delays = Array.from({ length: 500 }, () => backoffDelay(attempt, options, random));
    assert.ok(delays.every((delay) => delay >= 0 && delay <= cap), `attempt ${attempt}`);
    const mean = delays.reduce((a, b) => a + b, 0) / delays.length;
    assert.ok(Math.abs(mean - cap / 2) < cap * 0.1, `attempt ${attempt}: mean ${mean}, cap ${cap}`);
    assert.ok(Math.max(...delays) > cap * 0.9, "the whole interval is used");
  }
  // The upper end grows by the factor, then stays at max.
  const top = () => 0.999999;
  const highest = [1, 2, 3, 4, 5, 6, 50, 5000].map((n) => Math.round(backoffDelay(n, { initial: 100, max: 1000, factor: 3 }, top)));
  assert.deepEqual(highest, [100, 300, 900, 1000, 1000, 1000, 1000, 1000]);
  assert.equal(backoffDelay(7, options, () => 0), 0);
  // Defaults: 500 ms growing to 30 s.
  assert.equal(Math.round(backoffDelay(1, {}, top)), 500);
  assert.equal(Math.round(backoffDelay(30, undefined, top)), 30000);
});

test("the default retry rules", () => {
  assert.deepEqual([...RETRY_CODES], [1001, 1006, 1011, 1012, 1013, 1014]);
  for (const status of [408, 429, 500, 502, 503, 504, 599]) assert.ok(RETRY_STATUSES.includes(status));
  for (const status of [400, 401, 403, 404, 426]) assert.ok(!RETRY_STATUSES.includes(status));
  assert.ok(Object.isFrozen(RETRY_CODES) && Object.isFrozen(RETRY_STATUSES));
});

test("options and URLs are checked when connecting", (t) => {
  assert.throws(() => connect("http://[bad", { WebSocket: FakeSocket }), TypeError);
  assert.throws(() => connect("ftp://example.com/", { WebSocket: FakeSocket }), /ws:\/\/ or wss:\/\//);
  // No page to resolve against: the error says to give the whole URL.
  assert.throws(() => connect("/relative", { WebSocket: FakeSocket }), /needs a page .* such as ws:\/\/127\.0\.0\.1:8000\//);
  assert.throws(() => connect("http://[bad", { WebSocket: FakeSocket }), (error) => !error.message.includes("page"));
  assert.throws(() => connect("ws://x/", { WebSocket: FakeSocket, requestTimeout: 0 }), /requestTimeout/);
  assert.throws(() => connect("ws://x/", { WebSocket: FakeSocket, reconnect: { maxAttempts: -1 } }), /maxAttempts/);
  assert.throws(() => connect("ws://x/", { WebSocket: FakeSocket, token: 42 }), /token/);
  const saved = globalThis.WebSocket;
  globalThis.WebSocket = undefined;
  try {
    assert.throws(() => connect("ws://x/"), /no WebSocket implementation/);
  } finally {
    globalThis.WebSocket = saved;
  }
});

test("http(s) URLs and, in a page, relative ones become ws(s)", async (t) => {
  FakeSocket.instances = [];
  const client = connect("https://fake.invalid/path", { WebSocket: FakeSocket, params: { n: 1 } });
  await until(() => FakeSocket.instances.length === 1, "a socket");
  assert.equal(FakeSocket.last.url, "wss://fake.invalid/path?n=1");
  client.close();
  globalThis.location = { href: "https://example.com/app/page.html#top" };
  try {
    FakeSocket.instances = [];
    const relative = connect("/ws?x=1#frag", { WebSocket: FakeSocket, token: "t t", protocols: ["p1"] });
    t.after(() => relative.close());
    await until(() => FakeSocket.instances.length === 1, "a socket");
    assert.equal(FakeSocket.last.url, "wss://example.com/ws?x=1&token=t+t");
    assert.deepEqual(FakeSocket.last.protocols, ["p1"]);
  } finally {
    delete globalThis.location;
  }
});

test("state changes are delivered in order, even when a listener closes the client", async (t) => {
  const { client, logger } = fakeClient(t);
  const seen = [];
  client.onState(() => {
    throw new Error("a broken listener");
  });
  client.onState((change) => {
    if (change.state === "open") client.close(4000, "from a listener");
  });
  client.onState((change) => seen.push(`${change.state}${change.code === null ? "" : ` ${change.code}`}`));
  await until(() => FakeSocket.instances.length === 1, "a socket");
  FakeSocket.last.accept();
  assert.deepEqual(seen, ["connecting", "open", "closed 4000"]);
  assert.equal(logger.errors.length, 3); // the broken listener, once per change
  assert.match(logger.errors[0], /onState listener threw.*a broken listener/s);
});

test("a drop during the replay starts the cycle over, replays kept and in order", async (t) => {
  const { client, states } = fakeClient(t);
  const failures = [];
  client.onReplayError((error) => failures.push(error));
  await until(() => FakeSocket.instances.length === 1, "a socket");
  let socket = FakeSocket.last;
  socket.accept();
  const joins = ["a", "b"].map((room) => client.request("join", { room }, { replay: true }));
  for (const frame of socket.sent) socket.receive({ type: "join", id: frame.id, ok: true, data: null });
  await Promise.all(joins);

  socket.drop(1006);
  await until(() => FakeSocket.instances.length === 2, "a second socket");
  socket = FakeSocket.last;
  socket.accept();
  const waiting = client.request("echo", "after");
  assert.deepEqual(socket.sent.map((frame) => frame.data), [{ room: "a" }]);
  socket.receive({ type: "join", id: socket.sent[0].id, ok: true, data: null });
  await until(() => socket.sent.length === 2, "the second replay");
  socket.drop(1012); // before b's reply
  assert.equal(client.state, "reconnecting");

  await until(() => FakeSocket.instances.length === 3, "a third socket");
  socket = FakeSocket.last;
  socket.accept();
  for (const room of ["a", "b"]) {
    await until(() => socket.sent.length > 0 && socket.sent[socket.sent.length - 1].data.room === room, room);
    assert.equal(client.state, "reconnecting");
    socket.receive({ type: "join", id: socket.sent[socket.sent.length - 1].id, ok: true, data: null });
  }
  await until(() => client.state === "open", "open");
  assert.equal(socket.sent[2].type, "echo", "the waiting request goes after the replays");
  socket.receive({ type: "echo", id: socket.sent[2].id, ok: true, data: "after" });
  assert.equal(await waiting, "after");
  assert.deepEqual(failures, []);
  const ids = FakeSocket.instances.flatMap((s) => s.sent.map((frame) => frame.id));
  assert.deepEqual(ids, [1, 2, 3, 4, 5, 6, 7], "ids never restart");
  assert.deepEqual(
    states.names.filter((name, i, all) => name !== all[i - 1]),
    ["connecting", "open", "reconnecting", "open"],
  );
});

test("a malformed error reply still rejects with a HandlerError", async (t) => {
  const { client } = fakeClient(t);
  await until(() => FakeSocket.instances.length === 1, "a socket");
  FakeSocket.last.accept();
  const failing = client.request("x");
  FakeSocket.last.receive({ type: "x", id: FakeSocket.last.sent[0].id, ok: false });
  const error = await failing.catch((e) => e);
  assert.ok(error instanceof HandlerError);
  assert.equal(error.code, "invalid_reply");
});

test("close() leaves no timer behind", async (t) => {
  const timers = () => process.getActiveResourcesInfo().filter((name) => name === "Timeout").length;
  const before = timers();
  const { client } = fakeClient(t, { reconnect: { initial: 60000, max: 60000 } });
  const pending = [client.request("a"), client.request("b", null, { timeout: 50000 }), client.emit("c")];
  await until(() => FakeSocket.instances.length === 1, "a socket");
  FakeSocket.last.drop(1006); // a failed attempt: a long reconnect timer now runs
  assert.equal(client.state, "reconnecting");
  assert.ok(timers() > before);
  await client.close();
  for (const promise of pending) await assert.rejects(promise, ClosedError);
  assert.equal(timers(), before);
});

test("a socket given up on (connect timeout) is ignored from then on", async (t) => {
  const { client, logger } = fakeClient(t, { connectTimeout: 20 });
  await until(() => FakeSocket.instances.length === 2, "a second attempt");
  const stale = FakeSocket.instances[0];
  stale.accept(); // too late
  stale.receive("not even JSON");
  assert.notEqual(client.state, "open");
  assert.deepEqual(logger.warnings, []);
  FakeSocket.last.accept();
  assert.equal(client.state, "open");
});
