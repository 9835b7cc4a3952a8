// Requests, replies, events, tokens and bad input, against a real `wsroute run` process.

import assert from "node:assert/strict";
import { after, before, test } from "node:test";

import { WebSocket } from "ws";

import {
  ClosedError,
  HandlerError,
  RequestTimeoutError,
  TimeoutError,
  WsrouteError,
  connect,
} from "../../wsroute/static/wsroute.js";
import { Server, nextEvent, recordStates, recordingLogger, sleep, spyWebSocket, within } from "./helpers.mjs";

let server;
before(async () => {
  server = await Server.start();
});
after(async () => {
  await server?.kill();
});

/** A client of the test server as `user`, closed when the test ends. */
function open(t, user, options = {}) {
  const client = connect(server.url, {
    WebSocket,
    token: `secret:${user}`,
    logger: recordingLogger(),
    reconnect: { initial: 20, max: 100 },
    ...options,
  });
  t.after(() => client.close());
  return client;
}

test("a request gets its reply; requests made before open wait for it", async (t) => {
  const client = open(t, "reply");
  assert.equal(client.state, "connecting");
  const early = client.request("echo", { list: [1, "two", null], nested: { ok: true } });
  assert.deepEqual(await within(early, "the echo"), { list: [1, "two", null], nested: { ok: true } });
  assert.equal(client.state, "open");
  assert.equal(await client.request("echo"), null); // data defaults to null
  assert.equal(await client.request("whoami"), "reply"); // the token reached bearer_auth
  assert.equal(await client.request("echo", "ünïcödé ✓"), "ünïcödé ✓");
  await client.opened();
});

test("an error reply rejects with HandlerError: code, message, details, type", async (t) => {
  const client = open(t, "errors");
  const error = await client.request("fail").catch((e) => e);
  assert.ok(error instanceof HandlerError && error instanceof WsrouteError && error instanceof Error);
  assert.equal(error.name, "HandlerError");
  assert.equal(error.code, "not_found");
  assert.equal(error.message, "no such thing");
  assert.deepEqual(error.details, { id: 42 });
  assert.equal(error.type, "fail");

  const invalid = await client.request("join", { room: 7 }).catch((e) => e);
  assert.equal(invalid.code, "invalid_data");
  assert.ok(Array.isArray(invalid.details) && invalid.details[0].path === "$.room", JSON.stringify(invalid.details));
  const unknown = await client.request("no_such_type").catch((e) => e);
  assert.equal(unknown.code, "unknown_type");
  assert.equal(await client.request("echo", 1), 1, "an error reply does not hurt the connection");
});

test("a request times out; its late reply is dropped quietly", async (t) => {
  const logger = recordingLogger();
  const client = open(t, "timeout", { logger });
  await client.opened();
  const error = await client.request("slow", 0.3, { timeout: 50 }).catch((e) => e);
  assert.ok(error instanceof RequestTimeoutError, String(error)); // not the reply, "slept"
  assert.equal(TimeoutError, RequestTimeoutError);
  assert.equal(error.name, "RequestTimeoutError");
  assert.equal(error.type, "slow");
  assert.equal(error.timeout, 50);
  // Started later, this one ends later: the late reply has come before its own.
  assert.equal(await client.request("slow", 0.3), "slept");
  assert.deepEqual(logger.warnings, []);
  assert.equal(await client.request("echo", "still fine"), "still fine");
  // The client's default timeout applies too.
  const quick = open(t, "timeout2", { requestTimeout: 30 });
  await assert.rejects(quick.request("slow", 0.3), RequestTimeoutError);
});

test("1,000 concurrent requests on one client are all answered, matched by id", async (t) => {
  const client = open(t, "many");
  await client.opened();
  const replies = await within(
    Promise.all(Array.from({ length: 1000 }, (_, i) => client.request("echo", { i }))),
    "1,000 replies",
  );
  assert.deepEqual(
    replies.map((reply) => reply.i),
    Array.from({ length: 1000 }, (_, i) => i),
  );
});

test("a 1 MiB reply arrives whole", async (t) => {
  const client = open(t, "big");
  const reply = await client.request("big");
  assert.equal(reply.length, 1024 * 1024);
  assert.ok(/^x+$/.test(reply));
});

test("events: by type, by topic, '*' for all; the returned function unsubscribes", async (t) => {
  const logger = recordingLogger();
  const client = open(t, "events", { logger });
  await client.request("join", { room: "ev" });
  const seen = [];
  const offNote = client.on("note", (data, event) => seen.push(["note", data, event.topic]));
  client.on("note", () => seen.push(["note in room:ev"]), { topic: "room:ev" });
  client.on("say", (data, event) => seen.push(["say in room:ev", data.text, event.type]), { topic: "room:ev" });
  client.on("say", () => seen.push(["say in room:other"]), { topic: "room:other" });
  const offAll = client.on("*", (data, event) => seen.push(["*", event.type]));

  await client.request("notify", { n: 1 }); // pushed before the reply
  assert.deepEqual(seen, [
    ["note", { n: 1 }, undefined],
    ["*", "note"],
  ]);
  seen.length = 0;
  const said = nextEvent(client, "say", { topic: "room:ev" });
  // emit: no id, so the server's acknowledgement-less broadcast just publishes.
  await client.emit("say", { room: "ev", text: "hi" });
  assert.equal((await said).data.by, "events");
  assert.deepEqual(seen, [
    ["say in room:ev", "hi", "say"],
    ["*", "say"],
  ]);
  offNote();
  offNote(); // idempotent
  offAll();
  seen.length = 0;
  await client.request("notify", { n: 2 });
  assert.deepEqual(seen, []);
  // An emit to a direct handler gets a reply without id: expected, dropped without a word.
  await client.emit("echo", "no id");
  assert.equal(await client.request("echo", "after"), "after");
  assert.deepEqual(logger.warnings, []);
});

test("a listener that throws or rejects is logged; the others still run", async (t) => {
  const logger = recordingLogger();
  const client = open(t, "listeners", { logger });
  client.on("note", () => {
    throw new Error("listener bug");
  });
  client.on("note", async () => {
    throw new Error("async listener bug");
  });
  const received = nextEvent(client, "note");
  await client.request("notify", "x");
  assert.equal((await received).data, "x");
  await sleep(10);
  assert.equal(logger.errors.length, 2, logger.errors.join("\n"));
  assert.match(logger.errors[0], /listener bug/);
  assert.match(logger.errors[1], /async listener bug/);
});

test("bad input is logged and dropped; the client keeps working", async (t) => {
  const logger = recordingLogger();
  const client = open(t, "bad", { logger });
  assert.equal(await client.request("bad_frames"), "sent");
  const expected = [
    /not JSON: "this is not JSON"/,
    /binary frame/,
    /not a JSON object: "\[1, 2, 3\]"/,
    /reply with unknown id: .*999999/,
    /error reply without id \(type error\): invalid_json: bad/,
    /event without a type/,
  ];
  assert.equal(logger.warnings.length, expected.length, logger.warnings.join("\n"));
  expected.forEach((pattern, i) => assert.match(logger.warnings[i], pattern));
  assert.deepEqual(logger.errors, []);
  assert.equal(client.state, "open");
  assert.equal(await client.request("echo", "ok"), "ok");
});

test("the token goes in ?token= with the params; a token callback works too", async (t) => {
  let client = null;
  const spy = spyWebSocket(() => client);
  client = open(t, "unused", {
    WebSocket: spy.WebSocket,
    token: async () => "secret:callback",
    params: { room: "lobby", skip: undefined },
  });
  assert.equal(await client.request("whoami"), "callback");
  const url = new URL(spy.urls[0]);
  assert.equal(url.searchParams.get("token"), "secret:callback");
  assert.equal(url.searchParams.get("room"), "lobby");
  assert.equal(url.searchParams.has("skip"), false);
});

test("a wrong or missing token: 401 seen, closed at once, no reconnect loop", async (t) => {
  for (const token of ["wrong", undefined]) {
    let client = null;
    const spy = spyWebSocket(() => client);
    client = connect(server.url, { WebSocket: spy.WebSocket, token, logger: recordingLogger(), reconnect: { initial: 5 } });
    t.after(() => client.close());
    const states = recordStates(client);
    const closed = await states.next("closed");
    assert.equal(closed.status, 401);
    assert.equal(closed.code, 1006);
    assert.match(closed.reason, /401/);
    assert.deepEqual(states.names, ["connecting", "closed"]);
    const error = await client.opened().catch((e) => e);
    assert.ok(error instanceof ClosedError, String(error));
    await assert.rejects(client.request("echo"), ClosedError);
    await sleep(100);
    assert.equal(spy.urls.length, 1, "no second attempt");
  }
});

test("close() rejects pending and waiting requests with ClosedError", async (t) => {
  const client = open(t, "closing");
  await client.opened();
  const pending = client.request("slow", 5);
  const states = recordStates(client);
  const done = client.close(4000, "done here");
  assert.equal(client.state, "closed");
  const error = await pending.catch((e) => e);
  assert.ok(error instanceof ClosedError, String(error));
  assert.equal(error.code, 4000);
  assert.equal(error.reason, "done here");
  assert.deepEqual(states.changes, [
    { state: "closed", code: 4000, reason: "done here", status: null, attempt: 0, delay: null },
  ]);
  await within(done, "the close handshake");
  await assert.rejects(client.request("echo"), ClosedError);
  await assert.rejects(client.emit("echo"), ClosedError);
  await client.close(); // again: nothing happens
  assert.deepEqual(states.names, ["closed"]);
});

test("bad arguments fail at the call", async (t) => {
  const client = open(t, "arguments");
  await assert.rejects(client.request(""), TypeError);
  await assert.rejects(client.request("echo", 10n), TypeError); // JSON cannot carry a BigInt
  await assert.rejects(client.request("echo", () => 1), /not JSON/);
  await assert.rejects(client.request("echo", null, { timeout: -1 }), TypeError);
  assert.throws(() => client.close(1001), RangeError); // browsers refuse it too
  assert.throws(() => client.close(1000, "x".repeat(124)), RangeError);
  assert.throws(() => client.on("x", "not a function"), TypeError);
  assert.equal(await client.request("echo", "fine"), "fine");
});

test(
  "Node's built-in WebSocket works too; like a browser's, it hides a refusal's HTTP status",
  { skip: typeof globalThis.WebSocket !== "function" && "this Node has no global WebSocket" },
  async (t) => {
    const logger = recordingLogger();
    const client = open(t, "builtin", { WebSocket: undefined, logger }); // the global one
    assert.equal(await client.request("whoami"), "builtin");
    assert.equal((await client.request("big")).length, 1024 * 1024);
    assert.equal(await client.request("bad_frames"), "sent");
    assert.equal(logger.warnings.length, 6, logger.warnings.join("\n"));

    // A refused token looks like a dropped connection (1006), so maxAttempts bounds it.
    const refused = connect(server.url, { token: "wrong", logger, reconnect: { initial: 5, max: 10, maxAttempts: 2 } });
    t.after(() => refused.close());
    const states = recordStates(refused);
    const closed = await states.next("closed");
    assert.equal(closed.code, 1006);
    assert.equal(closed.status, null);
    assert.deepEqual(states.names, ["connecting", "reconnecting", "reconnecting", "closed"]);
  },
);
