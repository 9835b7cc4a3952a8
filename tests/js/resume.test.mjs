// Recovery: the client tracks each topic's last offset and epoch, presents them in
// `wsroute.recover` when it connects again, and gets what it missed, against a real
// `wsroute run app:recovering` process whose rooms keep history.

import assert from "node:assert/strict";
import { after, before, test } from "node:test";

import { decode, encode } from "@msgpack/msgpack";
import { WebSocket } from "ws";

import { connect } from "../../wsroute/static/wsroute.js";
import { Server, nextEvent, recordStates, recordingLogger, spyWebSocket, until, within } from "./helpers.mjs";

const FAST = { initial: 20, max: 100 };
const RECOVER = "wsroute.recover";

let server;
before(async () => {
  server = await Server.start({ target: "app:recovering" });
});
after(async () => {
  await server?.kill();
});

/** The integers from `first` to `last`. */
function range(first, last) {
  return Array.from({ length: last - first + 1 }, (_, i) => first + i);
}

/**
 * A token callback that can hold the client's next attempts (`hold()`) until
 * `release()`: the client stays away meanwhile, for as long as the test needs.
 */
function gate(user) {
  let held = null;
  return {
    token: () => (held === null ? `secret:${user}` : held.promise),
    hold() {
      let resolve;
      const promise = new Promise((done) => {
        resolve = done;
      });
      held = { promise, resolve };
    },
    release() {
      const { resolve } = held;
      held = null;
      resolve(`secret:${user}`);
    },
  };
}

/**
 * A client as `user` with a WebSocket spy (unless `options.WebSocket`), a state
 * recorder and every event it receives, closed when the test ends.
 */
function open(t, user, options = {}, url = server.url) {
  let client = null;
  const spy = spyWebSocket(() => client);
  const logger = recordingLogger();
  const door = gate(user);
  client = connect(url, { WebSocket: spy.WebSocket, token: door.token, logger, reconnect: FAST, ...options });
  const states = recordStates(client);
  const seen = [];
  client.on("*", (_data, event) => seen.push(event));
  t.after(() => client.close());
  return { client, spy, states, logger, door, seen };
}

/** A client that publishes, as its own user. */
function publisher(t, url = server.url) {
  const client = connect(url, { WebSocket, token: "secret:publisher", reconnect: false });
  t.after(() => client.close());
  return client;
}

/**
 * Have the server close the client's connection, keep it away while `meanwhile()`
 * runs, then let it connect again and wait until it is open (its replays done).
 */
async function away({ client, states, door }, meanwhile) {
  const mark = states.changes.length;
  door.hold();
  await client.request("kick", { code: 1012, reason: "restarting" });
  await states.next("reconnecting", mark);
  await meanwhile();
  door.release();
  await states.next("open", mark);
}

/** The `wsroute.recover` of each URL the client opened, parsed (`null` where absent). */
function presented(spy) {
  return spy.urls.map((url) => {
    const value = new URL(url).searchParams.get(RECOVER);
    return value === null ? null : JSON.parse(value);
  });
}

const ticks = (events) => events.filter((event) => event.type === "tick");

test("reconnect: exactly the missed events in order, then wsroute.recovery, then live ones", async (t) => {
  const topic = "room:resume";
  const pub = publisher(t);
  const user = open(t, "resumer", { params: { lang: "en" } });
  const { client, spy, seen } = user;
  // A listener sees the position of the event it is given (e.g. to save it).
  const offsets = [];
  client.on("tick", (_data, event) => offsets.push([event.offset, client.positions[topic]?.offset]));
  assert.equal(await client.request("subscribe", topic, { replay: true }), topic);
  await pub.request("publish", { topic, count: 3 });
  await until(() => ticks(seen).length === 3, "the first 3 events");
  const epoch = seen[0].epoch;
  assert.equal(typeof epoch, "string");
  assert.deepEqual(client.positions, { [topic]: { offset: 3, epoch } });

  await away(user, () => pub.request("publish", { topic, count: 50, first: 4 }));
  await pub.request("publish", { topic, count: 2, first: 54 });
  await until(() => ticks(seen).length === 55, "every event");

  assert.deepEqual(ticks(seen).map((event) => event.data), range(1, 55), "in order, none twice");
  assert.deepEqual(ticks(seen).map((event) => event.offset), range(1, 55));
  assert.ok(ticks(seen).every((event) => event.epoch === epoch && event.topic === topic));
  const recoveries = seen.filter((event) => event.type === "wsroute.recovery");
  assert.deepEqual(recoveries, [
    { type: "wsroute.recovery", topic, data: { recovered: true, offset: 53, epoch, missed: 50 } },
  ]);
  const at = seen.indexOf(recoveries[0]);
  assert.deepEqual(ticks(seen.slice(0, at)).map((event) => event.data), range(1, 53), "missed ones first");
  assert.deepEqual(ticks(seen.slice(at)).map((event) => event.data), [54, 55], "live ones after");
  assert.deepEqual(offsets, range(1, 55).map((n) => [n, n]));
  assert.deepEqual(client.positions, { [topic]: { offset: 55, epoch } });

  // Nothing on the first attempt; the position at the drop on the next, after the
  // params and the token, and the server read it.
  assert.deepEqual(presented(spy), [null, { [topic]: [3, epoch] }]);
  assert.deepEqual(spy.urls.map((url) => [...new URL(url).searchParams.keys()]), [
    ["lang", "token"],
    ["lang", "token", RECOVER],
  ]);
  const query = await client.request("query");
  assert.deepEqual(JSON.parse(query[RECOVER]), { [topic]: [3, epoch] });
});

test("every attempt presents the latest positions, in the same query order", async (t) => {
  const topic = "room:twice";
  const pub = publisher(t);
  const user = open(t, "twice", { params: { lang: "en" } });
  const { client, spy, seen } = user;
  await client.request("subscribe", topic, { replay: true });
  await pub.request("publish", { topic, count: 1 });
  await until(() => ticks(seen).length === 1, "the first event");
  await away(user, () => pub.request("publish", { topic, count: 2, first: 2 }));
  await away(user, () => pub.request("publish", { topic, count: 2, first: 4 }));
  await until(() => ticks(seen).length === 5, "every event");
  assert.deepEqual(ticks(seen).map((event) => event.data), range(1, 5));
  const epoch = seen[0].epoch;
  assert.deepEqual(presented(spy), [null, { [topic]: [1, epoch] }, { [topic]: [3, epoch] }]);
  const recoveries = seen.filter((event) => event.type === "wsroute.recovery").map((event) => event.data);
  assert.deepEqual(recoveries, [
    { recovered: true, offset: 3, epoch, missed: 2 },
    { recovered: true, offset: 5, epoch, missed: 2 },
  ]);
  const keys = spy.urls.map((url) => [...new URL(url).searchParams.keys()].join("&"));
  assert.deepEqual(keys, ["lang&token", `lang&token&${RECOVER}`, `lang&token&${RECOVER}`]);
});

test("history lost (server restarted): recovered false, the position moves to the new epoch", async (t) => {
  const own = await Server.start({ target: "app:recovering" });
  t.after(() => own.kill());
  const topic = "room:lost";
  const { client, states, seen } = open(t, "amnesia", {}, own.url);
  const heard = nextEvent(client, "wsroute.recovery", { topic });
  await client.request("subscribe", topic, { replay: true });
  await publisher(t, own.url).request("publish", { topic, count: 2 });
  await until(() => ticks(seen).length === 2, "the first events");
  const old = seen[0].epoch;

  const mark = states.changes.length;
  await own.kill();
  await states.next("reconnecting", mark);
  await own.restart();
  await states.next("open", mark);
  const { data } = await heard;
  assert.equal(data.recovered, false);
  assert.equal(data.reason, "epoch_changed");
  assert.equal(data.missed, 0);
  assert.equal(typeof data.epoch, "string");
  assert.notEqual(data.epoch, old);
  assert.deepEqual(client.positions, { [topic]: { offset: data.offset, epoch: data.epoch } });

  // Live events go on from there, in the new epoch.
  await publisher(t, own.url).request("publish", { topic, count: 1, first: 100 });
  await until(() => ticks(seen).length === 3, "a live event");
  const live = ticks(seen)[2];
  assert.equal(live.data, 100);
  assert.equal(live.epoch, data.epoch);
  assert.deepEqual(client.positions, { [topic]: { offset: live.offset, epoch: data.epoch } });
});

test("history too small: recovered false (too_old), the position moves to the current one", async (t) => {
  const topic = "tiny:short";
  const pub = publisher(t);
  const user = open(t, "forgetful");
  const { client, seen } = user;
  await client.request("subscribe", topic, { replay: true });
  await pub.request("publish", { topic, count: 2 });
  await until(() => ticks(seen).length === 2, "the first events");
  const epoch = seen[0].epoch;

  await away(user, () => pub.request("publish", { topic, count: 10, first: 3 })); // tiny:* keeps 3
  const recoveries = seen.filter((event) => event.type === "wsroute.recovery");
  assert.equal(recoveries.length, 1);
  assert.deepEqual(recoveries[0].data, { recovered: false, offset: 12, epoch, missed: 0, reason: "too_old" });
  assert.deepEqual(client.positions, { [topic]: { offset: 12, epoch } });
  await pub.request("publish", { topic, count: 1, first: 13 });
  await until(() => ticks(seen).length === 3, "a live event");
  assert.deepEqual(ticks(seen).map((event) => event.data), [1, 2, 13], "no partial recovery");
  assert.deepEqual(client.positions, { [topic]: { offset: 13, epoch } });
});

test("seeded positions (e.g. saved before a page reload) go with the first connection", async (t) => {
  const topic = "room:seeded";
  const pub = publisher(t);
  const first = open(t, "reloader");
  await first.client.request("subscribe", topic);
  await pub.request("publish", { topic, count: 3 });
  await until(() => ticks(first.seen).length === 3, "the first events");
  const saved = JSON.parse(JSON.stringify(first.client.positions)); // as through sessionStorage
  await first.client.close();
  await pub.request("publish", { topic, count: 4, first: 4 });

  const second = open(t, "reloader", { positions: saved });
  const copy = second.client.positions;
  copy[topic].offset = 999;
  delete copy[topic];
  assert.deepEqual(second.client.positions, saved, "positions is a copy");
  await second.client.request("subscribe", topic, { replay: true });
  const epoch = saved[topic].epoch;
  assert.deepEqual(presented(second.spy), [{ [topic]: [3, epoch] }]);
  assert.deepEqual(ticks(second.seen).map((event) => event.data), [4, 5, 6, 7]);
  const recovery = second.seen.find((event) => event.type === "wsroute.recovery");
  assert.deepEqual(recovery.data, { recovered: true, offset: 7, epoch, missed: 4 });
  assert.deepEqual(second.client.positions, { [topic]: { offset: 7, epoch } });
});

test("a topic without history: recovered false, offset null, and the old position stands", async (t) => {
  const topic = "plain:nothing-kept";
  const positions = { [topic]: { offset: 7, epoch: "abcdefgh" } };
  const { client, seen } = open(t, "plain", { positions });
  await client.request("subscribe", topic);
  await until(() => seen.length === 1, "the recovery event");
  assert.deepEqual(seen[0], {
    type: "wsroute.recovery",
    topic,
    data: { recovered: false, offset: null, epoch: null, missed: 0, reason: "no_history" },
  });
  assert.deepEqual(client.positions, positions);
});

test("recover: false tracks nothing and presents nothing", async (t) => {
  const topic = "room:untracked";
  const pub = publisher(t);
  const user = open(t, "untracked", { recover: false });
  const { client, spy, seen } = user;
  await client.request("subscribe", topic, { replay: true });
  await pub.request("publish", { topic, count: 2 });
  await until(() => ticks(seen).length === 2, "the first events");
  assert.equal(typeof seen[0].offset, "number", "the server sent positions");
  assert.deepEqual(client.positions, {});

  await away(user, () => pub.request("publish", { topic, count: 3, first: 3 }));
  await pub.request("publish", { topic, count: 1, first: 6 });
  await until(() => ticks(seen).length === 3, "a live event");
  assert.deepEqual(ticks(seen).map((event) => event.data), [1, 2, 6], "the missed ones stay missed");
  assert.ok(!seen.some((event) => event.type === "wsroute.recovery"));
  assert.deepEqual(presented(spy), [null, null]);
  assert.ok(!(RECOVER in (await client.request("query"))), "the server saw no wsroute.recover");
  assert.deepEqual(client.positions, {});
  assert.equal(client.forgetPosition(topic), false);
});

test("forgetPosition: a topic left is not presented any more", async (t) => {
  const positions = {
    "room:left": { offset: 4, epoch: "abcdefgh" },
    "room:kept": { offset: 9, epoch: "abcdefgh" },
  };
  const { client, spy } = open(t, "leaver", { positions });
  assert.equal(client.forgetPosition("room:left"), true);
  assert.equal(client.forgetPosition("room:left"), false);
  await client.opened();
  assert.deepEqual(presented(spy), [{ "room:kept": [9, "abcdefgh"] }]);
  assert.deepEqual(client.positions, { "room:kept": { offset: 9, epoch: "abcdefgh" } });
});

test("over 256 topics: the most recently updated are kept and presented, with one warning", async (t) => {
  // Short names, so that 256 fit in the URL.
  const positions = Object.fromEntries(range(0, 299).map((n) => [`t:${n}`, { offset: n, epoch: "e" }]));
  const user = open(t, "many", { positions });
  const { client, spy, logger } = user;
  const kept = Object.keys(client.positions);
  assert.deepEqual(kept, range(44, 299).map((n) => `t:${n}`));
  assert.equal(logger.warnings.length, 1, logger.warnings.join("\n"));
  assert.match(logger.warnings[0], /256 most recently updated topics/);
  await client.opened(); // not refused: the server takes 256
  assert.equal(Object.keys(presented(spy)[0]).length, 256);
  assert.equal(Object.keys(JSON.parse((await client.request("query"))[RECOVER])).length, 256);
  await away(user, async () => {});
  assert.equal(logger.warnings.length, 1, "warned once");
});

test("positions too long for the URL: the most recent that fit are presented, with one warning", async (t) => {
  // 100 topics of 200 characters: about 24 KiB once encoded, more than a request head holds.
  const name = (n) => `room:${String(n).padStart(3, "0")}-${"x".repeat(191)}`;
  const positions = Object.fromEntries(range(0, 99).map((n) => [name(n), { offset: n, epoch: "abcdefgh" }]));
  const user = open(t, "long", { positions });
  const { client, spy, logger } = user;
  await client.opened(); // not refused: the head fits
  const sent = Object.keys(presented(spy)[0]);
  assert.ok(sent.length > 10 && sent.length < 100, `${sent.length} topics presented`);
  assert.deepEqual(sent, range(100 - sent.length, 99).map(name), "the most recently updated");
  assert.ok(new URL(spy.urls[0]).search.length < 10240 + 100, "within the budget");
  assert.equal(Object.keys(client.positions).length, 100, "all are kept, for later");
  assert.equal(logger.warnings.length, 1, logger.warnings.join("\n"));
  assert.match(logger.warnings[0], /do not fit in the URL/);
  await away(user, async () => {});
  assert.equal(logger.warnings.length, 1, "warned once");
});

test("msgpack: positions from msgpack maps, recovered the same way", async (t) => {
  const topic = "room:packed";
  const pub = publisher(t);
  const user = open(t, "packer", { WebSocket, msgpack: { encode, decode } });
  const { client, seen } = user;
  await client.request("subscribe", topic, { replay: true });
  assert.equal(client.subprotocol, "wsroute.v1.msgpack");
  await pub.request("publish", { topic, count: 2 });
  await until(() => ticks(seen).length === 2, "the first events");
  const epoch = seen[0].epoch;
  assert.deepEqual(client.positions, { [topic]: { offset: 2, epoch } });

  await away(user, () => pub.request("publish", { topic, count: 3, first: 3 }));
  await pub.request("publish", { topic, count: 1, first: 6 });
  await until(() => ticks(seen).length === 6, "every event");
  assert.deepEqual(ticks(seen).map((event) => [event.data, event.offset]), range(1, 6).map((n) => [n, n]));
  const recoveries = seen.filter((event) => event.type === "wsroute.recovery");
  assert.deepEqual(recoveries.map((event) => event.data), [{ recovered: true, offset: 5, epoch, missed: 3 }]);
  assert.equal(seen.indexOf(recoveries[0]), 5, "after the missed events, before the live one");
  assert.equal(client.subprotocol, "wsroute.v1.msgpack");
  assert.deepEqual(client.positions, { [topic]: { offset: 6, epoch } });
});

test("options: recover and positions are checked at connect()", () => {
  const options = { WebSocket, reconnect: false, logger: null };
  const url = "ws://127.0.0.1:9/";
  assert.throws(() => connect(url, { ...options, recover: "yes" }), /recover must be true or false/);
  assert.throws(
    () => connect(url, { ...options, recover: false, positions: { a: { offset: 1, epoch: "e" } } }),
    /positions need recover: true/,
  );
  for (const bad of [
    [["a", { offset: 1, epoch: "e" }]],
    "a",
    { a: null },
    { a: [1, "e"] },
    { a: { offset: "1", epoch: "e" } },
    { a: { offset: -1, epoch: "e" } },
    { a: { offset: 1.5, epoch: "e" } },
    { a: { offset: 1, epoch: "" } },
    { a: { offset: 1, epoch: "e".repeat(65) } },
    { "": { offset: 1, epoch: "e" } },
  ]) {
    assert.throws(() => connect(url, { ...options, positions: bad }), TypeError, JSON.stringify(bad));
  }
  // A topic named like a prototype key is a topic like any other.
  const positions = JSON.parse('{"__proto__": {"offset": 1, "epoch": "e"}, "b": {"offset": 0, "epoch": "e"}}');
  const client = connect(url, { ...options, positions });
  assert.deepEqual(Object.keys(client.positions), ["__proto__", "b"]);
  assert.deepEqual(client.positions.__proto__, { offset: 1, epoch: "e" });
  client.close();
  const off = connect(url, { ...options, recover: false, positions: null });
  assert.deepEqual(off.positions, {});
  off.close();
});

test("a wsroute.recovery listener for one topic hears only that topic's", async (t) => {
  const positions = {
    "plain:one": { offset: 1, epoch: "abcdefgh" },
    "plain:two": { offset: 2, epoch: "abcdefgh" },
  };
  const { client } = open(t, "listener", { positions });
  const heard = [];
  client.on("wsroute.recovery", (data, event) => heard.push([event.topic, data.reason]), { topic: "plain:two" });
  const two = nextEvent(client, "wsroute.recovery", { topic: "plain:two" });
  await client.request("subscribe", "plain:one");
  await client.request("subscribe", "plain:two");
  await within(two, "the recovery of plain:two");
  assert.deepEqual(heard, [["plain:two", "no_history"]]);
});
