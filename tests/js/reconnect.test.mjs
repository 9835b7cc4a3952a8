// Reconnect, replay and close codes, against real `wsroute run` processes (killed and
// restarted) and against small Node servers that refuse or stall the handshake.

import assert from "node:assert/strict";
import { createServer } from "node:http";
import { createServer as createTcpServer } from "node:net";
import { after, before, test } from "node:test";

import { WebSocket } from "ws";

import { ClosedError, DisconnectedError, HandlerError, RequestTimeoutError, connect } from "../../wsroute/static/wsroute.js";
import { Server, nextEvent, recordStates, recordingLogger, sleep, spyWebSocket, until, within } from "./helpers.mjs";

const FAST = { initial: 20, max: 100 };

let server;
before(async () => {
  server = await Server.start();
});
after(async () => {
  await server?.kill();
});

/** A client as `user` with a WebSocket spy and a state recorder, closed when the test ends. */
function open(t, user, options = {}, url = server.url) {
  let client = null;
  const spy = spyWebSocket(() => client);
  const logger = recordingLogger();
  client = connect(url, { WebSocket: spy.WebSocket, token: `secret:${user}`, logger, reconnect: FAST, ...options });
  const states = recordStates(client);
  t.after(() => client.close());
  return { client, spy, states, logger };
}

/** Have the server close the connection with `kick`, then wait for the client to be open again. */
async function kickAndReconnect(client, states, kick) {
  const mark = states.changes.length;
  await client.request("kick", kick);
  const reconnecting = await states.next("reconnecting", mark);
  assert.equal(reconnecting.code, kick.code);
  await states.next("open", mark);
}

async function history(user) {
  const probe = connect(server.url, { WebSocket, token: `secret:${user}`, reconnect: false });
  try {
    return await probe.request("history");
  } finally {
    await probe.close();
  }
}

/** A port where nothing listens (a refused connection, like a server that is down). */
async function deadPort() {
  const probe = createTcpServer();
  await new Promise((resolve) => probe.listen(0, "127.0.0.1", resolve));
  const { port } = probe.address();
  await new Promise((resolve) => probe.close(resolve));
  return port;
}

/** An HTTP server that answers every WebSocket handshake with `status`. */
async function refusingServer(t, status) {
  const http = createServer();
  http.on("upgrade", (request, socket) => {
    socket.on("error", () => {}); // the client may reset it first
    socket.end(`HTTP/1.1 ${status} Refused\r\nContent-Length: 0\r\nConnection: close\r\n\r\n`);
  });
  await new Promise((resolve) => http.listen(0, "127.0.0.1", resolve));
  t.after(() => new Promise((resolve) => http.close(resolve)));
  return `ws://127.0.0.1:${http.address().port}/`;
}

test("server killed and restarted: the pending request fails, join is replayed before open", async (t) => {
  const own = await Server.start();
  t.after(() => own.kill());
  const { client, spy, states } = open(t, "phoenix", {}, own.url);
  assert.deepEqual(await client.request("join", { room: "r1" }, { replay: true }), { room: "r1" });
  const pending = client.request("slow", 30, { timeout: 20000 }).catch((e) => e);
  await sleep(50); // let it reach the server

  const mark = states.changes.length;
  await own.kill();
  const error = await within(pending, "the pending request to fail");
  assert.ok(error instanceof DisconnectedError, String(error));
  assert.equal(error.code, 1006);
  const reconnecting = await states.next("reconnecting", mark);
  assert.equal(reconnecting.code, 1006);
  assert.equal(reconnecting.attempt, 1);
  assert.ok(reconnecting.delay >= 0 && reconnecting.delay <= FAST.initial);
  await until(() => spy.urls.length >= 3, "attempts while the server is down");
  const sentBeforeRestart = spy.sent.length;
  // A request made meanwhile waits for open, then goes after the replay.
  const meanwhile = client.request("echo", "meanwhile");

  await own.restart();
  await states.next("open", mark);
  const resent = spy.sent.slice(sentBeforeRestart);
  assert.deepEqual(resent[0].frame.type, "join");
  assert.deepEqual(resent[0].frame.data, { room: "r1" });
  assert.equal(resent[0].state, "reconnecting", "the replay goes out before the state turns open");
  assert.equal(await within(meanwhile, "the waiting request"), "meanwhile");
  assert.ok(resent[0].frame.id < resent[1].frame.id, "ids keep increasing over reconnects");

  // The replayed join restored the subscription: a broadcast to the room arrives.
  const other = open(t, "other", {}, own.url).client;
  const heard = nextEvent(client, "say", { topic: "room:r1" });
  await other.request("say", { room: "r1", text: "after the restart" });
  assert.equal((await heard).data.text, "after the restart");
  assert.equal(await client.request("echo", 1), 1);
  const names = states.names.filter((name, i, all) => name !== all[i - 1]);
  assert.deepEqual(names, ["connecting", "open", "reconnecting", "open"]);
});

test("replays go in their original order, identical ones once, before waiting requests", async (t) => {
  const { client, states } = open(t, "order");
  for (const room of ["a", "b", "c", "b"]) await client.request("join", { room }, { replay: true });
  await client.request("join", { room: "not-replayed" });
  await client.request("kick", { code: 1012, reason: "restarting" });
  const reconnecting = await states.next("reconnecting");
  assert.equal(reconnecting.code, 1012);
  assert.equal(reconnecting.reason, "restarting");
  await client.request("echo", "after");
  const log = await history("order");
  assert.deepEqual(log, [
    ["join", "a"],
    ["join", "b"],
    ["join", "c"],
    ["join", "b"],
    ["join", "not-replayed"],
    ["join", "a"],
    ["join", "b"],
    ["join", "c"],
    ["echo", "after"],
  ]);
});

test("forgetReplay stops replaying one request, or every one of a type", async (t) => {
  const { client, states } = open(t, "forget");
  for (const room of ["x", "y", "z"]) await client.request("join", { room }, { replay: true });
  assert.equal(client.forgetReplay("join", { room: "y" }), 1);
  assert.equal(client.forgetReplay("join", { room: "nope" }), 0);
  await kickAndReconnect(client, states, { code: 1012 });
  assert.equal(client.forgetReplay("join"), 2);
  await kickAndReconnect(client, states, { code: 1012 });
  assert.deepEqual(
    (await history("forget")).map(([, room]) => room),
    ["x", "y", "z", "x", "z"],
  );
});

test("a replay that fails after reconnect is reported and forgotten, not retried", async (t) => {
  const { client, states } = open(t, "doomed-user", { requestTimeout: 300 });
  const failures = [];
  client.onReplayError((error, request) => failures.push([error, request]));
  for (const room of ["keep", "doomed", "stalled"]) await client.request("join", { room }, { replay: true });
  await client.request("close_room", { room: "doomed", how: "refuse" });
  await client.request("close_room", { room: "stalled", how: "stall" });

  await kickAndReconnect(client, states, { code: 1011, reason: "oops" });
  assert.equal(failures.length, 2);
  const [[refused, refusedRequest], [stalled, stalledRequest]] = failures;
  assert.ok(refused instanceof HandlerError);
  assert.equal(refused.code, "room_closed");
  assert.deepEqual(refused.details, { room: "doomed" });
  assert.deepEqual(refusedRequest, { type: "join", data: { room: "doomed" } });
  assert.ok(stalled instanceof RequestTimeoutError);
  assert.deepEqual(stalledRequest, { type: "join", data: { room: "stalled" } });

  await kickAndReconnect(client, states, { code: 1011 });
  assert.equal(failures.length, 2);
  assert.deepEqual(
    (await history("doomed-user")).map(([, room]) => room),
    ["keep", "doomed", "stalled", "keep", "doomed", "stalled", "keep"],
  );
});

test("a replay failure without an onReplayError listener is logged", async (t) => {
  const { client, states, logger } = open(t, "unheard");
  await client.request("join", { room: "gone" }, { replay: true });
  await client.request("close_room", { room: "gone" });
  await kickAndReconnect(client, states, { code: 1013 });
  assert.equal(logger.warnings.length, 1);
  assert.match(logger.warnings[0], /replaying join failed/);
});

for (const [code, reason] of [
  [4001, "go away"],
  [1008, "policy"],
  [1000, ""],
]) {
  test(`a server close with ${code}: closed, no reconnect`, async (t) => {
    const { client, spy, states } = open(t, `kicked-${code}`);
    await client.request("kick", { code, reason });
    const closed = await states.next("closed");
    assert.equal(closed.code, code);
    assert.equal(closed.reason, reason);
    assert.deepEqual(states.names, ["connecting", "open", "closed"]);
    await assert.rejects(client.request("echo"), ClosedError);
    await sleep(150);
    assert.equal(spy.urls.length, 1);
  });
}

for (const code of [1011, 1012, 1013, 1014]) {
  test(`a server close with ${code}: reconnect`, async (t) => {
    const { client, spy, states } = open(t, `retried-${code}`);
    await client.request("kick", { code, reason: "later" });
    const reconnecting = await states.next("reconnecting");
    assert.equal(reconnecting.code, code);
    await states.next("open", states.changes.indexOf(reconnecting));
    assert.equal(spy.urls.length, 2);
    assert.equal(await client.request("echo", code), code);
  });
}

test("retryCodes and retryStatuses replace the defaults", async (t) => {
  const { client, states } = open(t, "custom", { reconnect: { ...FAST, retryCodes: [4001] } });
  await kickAndReconnect(client, states, { code: 4001 });
  await client.request("kick", { code: 1012 });
  assert.equal((await states.next("closed")).code, 1012);

  const url = await refusingServer(t, 503);
  const refused = open(t, "statuses", { reconnect: { retryStatuses: [] } }, url);
  assert.equal((await refused.states.next("closed")).status, 503);
});

test("a refused handshake: 408/429/5xx reconnect, 400/403/404 do not", async (t) => {
  for (const status of [408, 429, 500, 503]) {
    const url = await refusingServer(t, status);
    const { client, states, spy } = open(t, "refused", {}, url);
    const reconnecting = await states.next("reconnecting");
    assert.equal(reconnecting.status, status);
    await until(() => spy.urls.length >= 2, `a second attempt after ${status}`);
    await client.close();
  }
  for (const status of [400, 403, 404]) {
    const url = await refusingServer(t, status);
    const { states, spy } = open(t, "refused", {}, url);
    assert.equal((await states.next("closed")).status, status);
    await sleep(50);
    assert.equal(spy.urls.length, 1);
  }
});

test("maxAttempts bounds the attempts in a row, then closed", async (t) => {
  const url = `ws://127.0.0.1:${await deadPort()}/`;
  const { client, spy, states } = open(t, "nobody", { reconnect: { initial: 5, max: 10, maxAttempts: 3 } }, url);
  const waiting = client.request("echo", "never", { timeout: 5000 });
  const closed = await states.next("closed");
  assert.equal(closed.code, 1006);
  assert.deepEqual(states.names, ["connecting", "reconnecting", "reconnecting", "reconnecting", "closed"]);
  assert.deepEqual(
    states.changes.filter((c) => c.state === "reconnecting").map((c) => c.attempt),
    [1, 2, 3],
  );
  assert.equal(spy.urls.length, 4, "the first attempt and 3 more");
  await assert.rejects(waiting, ClosedError);
  await assert.rejects(client.opened(), ClosedError);
});

test("close() while reconnecting stops reconnecting and fails waiting requests", async (t) => {
  const url = `ws://127.0.0.1:${await deadPort()}/`;
  const { client, spy, states } = open(t, "nobody", { reconnect: { initial: 5, max: 10 } }, url);
  const waiting = client.request("echo", "never");
  const emitted = client.emit("echo", "never");
  await until(() => spy.urls.length >= 3, "a few attempts");
  assert.equal(client.state, "reconnecting");
  await client.close();
  await assert.rejects(waiting, ClosedError);
  await assert.rejects(emitted, ClosedError);
  const attempts = spy.urls.length;
  await sleep(100);
  assert.equal(spy.urls.length, attempts, "no attempt after close()");
  assert.equal(states.names.at(-1), "closed");
});

test("reconnect: false closes on the first drop", async (t) => {
  const { client, states } = open(t, "once", { reconnect: false });
  await client.request("kick", { code: 1012 });
  assert.equal((await states.next("closed")).code, 1012);
});

test("the token callback runs before every attempt; its failure is a failed attempt", async (t) => {
  let calls = 0;
  const { client, states, logger } = open(t, "unused", {
    token: () => {
      calls += 1;
      if (calls === 2) throw new Error("auth service down");
      return Promise.resolve(`secret:fresh-${calls}`);
    },
  });
  assert.equal(await client.request("whoami"), "fresh-1");
  await kickAndReconnect(client, states, { code: 1012 });
  assert.equal(calls, 3);
  assert.equal(await client.request("whoami"), "fresh-3");
  const failed = states.changes.filter((c) => c.state === "reconnecting")[1];
  assert.equal(failed.reason, "token callback failed");
  assert.match(logger.warnings[0], /token callback failed.*auth service down/s);
});

test("a handshake that never completes is bounded by connectTimeout", async (t) => {
  const sockets = new Set();
  const silent = createTcpServer((socket) => sockets.add(socket));
  await new Promise((resolve) => silent.listen(0, "127.0.0.1", resolve));
  t.after(() => {
    for (const socket of sockets) socket.destroy();
    return new Promise((resolve) => silent.close(resolve));
  });
  const url = `ws://127.0.0.1:${silent.address().port}/`;
  const { states } = open(t, "patient", { connectTimeout: 100 }, url);
  const reconnecting = await states.next("reconnecting");
  assert.equal(reconnecting.reason, "connection attempt timed out");
  assert.equal(reconnecting.code, 1006);
});
