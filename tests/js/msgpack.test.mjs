// The wsroute.v1.msgpack subprotocol with a codec passed as the `msgpack` option
// (@msgpack/msgpack here), against real `wsroute run` processes: binary frames both
// ways, Uint8Array as bytes, errors and events as under JSON, and JSON again where
// the server does not select msgpack.

import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { copyFileSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";

import { decode, encode } from "@msgpack/msgpack";
import { WebSocket } from "ws";

import { HandlerError, RequestTimeoutError, connect } from "../../wsroute/static/wsroute.js";
import { HERE, REPO, Server, WAIT_MS, nextEvent, recordStates, recordingLogger, until, within } from "./helpers.mjs";

const MSGPACK = "wsroute.v1.msgpack";
const CODEC = { encode, decode };
/** Every byte value once. */
const ALL_BYTES = Uint8Array.from({ length: 256 }, (_, i) => i);

let server;
let jsonServer;
before(async () => {
  [server, jsonServer] = await Promise.all([Server.start(), Server.start({ target: "app:json_only" })]);
});
after(async () => {
  await Promise.all([server?.kill(), jsonServer?.kill()]);
});

/**
 * A `ws` WebSocket class that records the subprotocols each socket offers, every
 * frame the client sends (as given to send) and, for every frame received, whether
 * it was binary.
 */
function frameSpy() {
  const spy = { offered: [], sent: [], binary: [] };
  spy.WebSocket = class FrameSpy extends WebSocket {
    constructor(url, protocols) {
      super(url, protocols);
      spy.offered.push(protocols);
      this.on("message", (_data, isBinary) => spy.binary.push(isBinary));
    }

    send(data, ...rest) {
      spy.sent.push(data);
      return super.send(data, ...rest);
    }
  };
  return spy;
}

/** A client of `url` as `user` (msgpack unless `options` says otherwise), closed when the test ends. */
function open(t, user, options = {}, url = server.url) {
  const logger = recordingLogger();
  const client = connect(url, {
    WebSocket,
    token: `secret:${user}`,
    logger,
    msgpack: CODEC,
    reconnect: { initial: 20, max: 100 },
    ...options,
  });
  t.after(() => client.close());
  return { client, logger };
}

test("the msgpack option is checked at connect(); msgpack is offered first", async (t) => {
  const url = server.url;
  assert.throws(() => connect(url, { WebSocket, msgpack: { encode } }), /msgpack\.decode must be a function/);
  assert.throws(() => connect(url, { WebSocket, msgpack: { encode: "x", decode } }), /msgpack\.encode must be a function/);
  assert.throws(() => connect(url, { WebSocket, msgpack: "@msgpack/msgpack" }), TypeError);
  assert.throws(() => connect(url, { WebSocket, msgpack: true }), /msgpack must be a codec/);
  // Offering msgpack without a codec would get binary frames the client cannot read.
  assert.throws(() => connect(url, { WebSocket, protocols: [MSGPACK] }), /pass a codec as the msgpack option/);
  assert.throws(() => connect(url, { WebSocket, protocols: MSGPACK }), TypeError);

  const spy = frameSpy();
  const { client } = open(t, "offer", { WebSocket: spy.WebSocket, protocols: ["chat.v2", MSGPACK] });
  assert.equal(client.subprotocol, null, "nothing selected before the first open");
  await client.opened();
  assert.deepEqual(spy.offered, [[MSGPACK, "chat.v2"]]);
  assert.equal(client.subprotocol, MSGPACK);

  // msgpack: null (or undefined) is no codec: the user's protocols go as given.
  const plainSpy = frameSpy();
  open(t, "offer-none", { WebSocket: plainSpy.WebSocket, msgpack: null, protocols: "chat.v2" });
  await until(() => plainSpy.offered.length > 0, "a socket");
  assert.equal(plainSpy.offered[0], "chat.v2");
});

test("a request and its reply travel as msgpack maps in binary frames", async (t) => {
  const spy = frameSpy();
  const { client, logger } = open(t, "round-trip", { WebSocket: spy.WebSocket });
  const value = {
    list: [1, "two", null, true, false],
    nested: { half: 1.5, big: 2 ** 53, negative: -7, empty: {} },
    text: "ünïcödé ✓",
  };
  assert.deepEqual(await within(client.request("echo", value), "the echo"), value);
  assert.equal(await client.request("subprotocol"), MSGPACK, "the server's conn.subprotocol");
  assert.equal(client.subprotocol, MSGPACK);
  await client.emit("echo", "no id");
  assert.equal(await client.request("echo"), null);

  assert.equal(spy.sent.length, 4);
  assert.ok(spy.sent.every((frame) => frame instanceof Uint8Array), "every frame sent is binary");
  assert.deepEqual(decode(spy.sent[0]), { type: "echo", id: 1, data: value });
  assert.deepEqual(decode(spy.sent[2]), { type: "echo", data: "no id" });
  assert.deepEqual(decode(spy.sent[3]), { type: "echo", id: 3, data: null });
  assert.ok(spy.binary.length >= 3 && spy.binary.every((binary) => binary), "every frame received is binary");
  assert.deepEqual(logger.warnings, []);
});

test("a Uint8Array reaches the handler as bytes and bytes come back as a Uint8Array", async (t) => {
  const { client } = open(t, "bytes");
  // Made before open: the request waits, so the bytes are sent after the change below.
  const sent = new Uint8Array([1, 2, 3]);
  const early = client.request("echo", sent);
  sent[0] = 99;
  const reply = await early;
  assert.ok(reply instanceof Uint8Array);
  assert.deepEqual([...reply], [1, 2, 3], "the bytes as they were at the call");

  assert.deepEqual(await client.request("kinds", { blob: ALL_BYTES, text: "x", n: 1, none: null }), {
    blob: "bytes",
    text: "str",
    n: "int",
    none: "NoneType",
  });
  const uploaded = await client.request("upload", { name: "all", content: ALL_BYTES });
  assert.equal(uploaded.name, "all");
  assert.ok(uploaded.content instanceof Uint8Array);
  assert.deepEqual(uploaded.content, ALL_BYTES);
  const buffer = await client.request("echo", Buffer.from("hi")); // a Buffer is a Uint8Array
  assert.deepEqual([...buffer], [104, 105]);
  assert.deepEqual([...(await client.request("echo", new Uint8Array(0)))], []);
});

test("an error reply has the code and details it has under JSON", async (t) => {
  const { client } = open(t, "errors-msgpack");
  const { client: json } = open(t, "errors-json", { msgpack: undefined });
  const cases = [
    ["join", { room: 7 }],
    ["upload", { name: "x", content: 12 }],
    ["upload", { name: "x" }],
    ["no_such_type", null],
    ["fail", null],
    ["subprotocol", { unexpected: true }],
  ];
  for (const [type, data] of cases) {
    const [viaMsgpack, viaJson] = await Promise.all([
      client.request(type, data).catch((e) => e),
      json.request(type, data).catch((e) => e),
    ]);
    assert.ok(viaMsgpack instanceof HandlerError, `${type}: ${viaMsgpack}`);
    assert.ok(viaJson instanceof HandlerError, `${type}: ${viaJson}`);
    assert.deepEqual(
      { code: viaMsgpack.code, message: viaMsgpack.message, details: viaMsgpack.details, type: viaMsgpack.type },
      { code: viaJson.code, message: viaJson.message, details: viaJson.details, type: viaJson.type },
      type,
    );
  }
  const invalid = await client.request("join", { room: 7 }).catch((e) => e);
  assert.equal(invalid.code, "invalid_data");
  assert.equal(invalid.details[0].path, "$.room");
  assert.equal(client.subprotocol, MSGPACK);
  assert.equal(json.subprotocol, null);
});

test("a broadcast reaches msgpack and JSON subscribers alike; bytes as binary or base64", async (t) => {
  const { client } = open(t, "events-msgpack");
  const { client: json } = open(t, "events-json", { msgpack: undefined });
  await Promise.all([client.request("join", { room: "mixed" }), json.request("join", { room: "mixed" })]);

  const said = [nextEvent(client, "say", { topic: "room:mixed" }), nextEvent(json, "say", { topic: "room:mixed" })];
  await client.emit("say", { room: "mixed", text: "hi" });
  const expected = { type: "say", topic: "room:mixed", data: { room: "mixed", text: "hi", by: "events-msgpack" } };
  assert.deepEqual(await said[0], expected);
  assert.deepEqual(await said[1], expected);

  // From the JSON client, bytes go as base64; each subscriber gets them in its format.
  const shared = [nextEvent(client, "share"), nextEvent(json, "share")];
  const base64 = Buffer.from(ALL_BYTES).toString("base64");
  assert.deepEqual(await json.request("share", { room: "mixed", content: base64 }), { room: "mixed", content: base64 });
  const [binary, text] = await Promise.all(shared);
  assert.deepEqual(binary, { type: "share", topic: "room:mixed", data: { room: "mixed", content: ALL_BYTES } });
  assert.deepEqual(text, { type: "share", topic: "room:mixed", data: { room: "mixed", content: base64 } });

  // And from the msgpack client, as binary; its acknowledgement holds them too.
  const again = [nextEvent(client, "share"), nextEvent(json, "share")];
  const ack = await client.request("share", { room: "mixed", content: new Uint8Array([0, 255]) });
  assert.deepEqual(ack, { room: "mixed", content: new Uint8Array([0, 255]) });
  assert.deepEqual((await again[0]).data.content, new Uint8Array([0, 255]));
  assert.equal((await again[1]).data.content, "AP8=");
});

test("where the server selects another subprotocol, the client speaks JSON", async (t) => {
  // An app that speaks JSON only, as another server would; it selects wsroute.v1.json.
  const spy = frameSpy();
  const { client, logger } = open(t, "fallback", { WebSocket: spy.WebSocket, protocols: ["wsroute.v1.json"] }, jsonServer.url);
  assert.deepEqual(await client.request("echo", { a: [1, null] }), { a: [1, null] });
  assert.equal(client.subprotocol, "wsroute.v1.json");
  assert.equal(await client.request("subprotocol"), "wsroute.v1.json");
  assert.deepEqual(spy.offered, [[MSGPACK, "wsroute.v1.json"]]);
  assert.ok(spy.sent.every((frame) => typeof frame === "string"), "every frame sent is text");
  assert.ok(spy.binary.length > 0 && spy.binary.every((binary) => !binary), "every frame received is text");
  // A Uint8Array goes as base64 text, which a `bytes` field takes from a JSON client
  // (a handler that takes Any sees the text).
  assert.deepEqual(await client.request("upload", { name: "b", content: new Uint8Array([0, 255]) }), {
    name: "b",
    content: "AP8=",
  });
  assert.deepEqual(await client.request("kinds", { blob: new Uint8Array([1]) }), { blob: "str" });
  assert.deepEqual(JSON.parse(spy.sent[spy.sent.length - 1]).data, { blob: "AQ==" });
  assert.deepEqual(logger.warnings, []);

  // A wsroute app selects in its own order, JSON first, whatever the client's order.
  const { client: named } = open(t, "fallback-named", { protocols: ["wsroute.v1.json"] });
  assert.equal(await named.request("subprotocol"), "wsroute.v1.json");
  assert.equal(named.subprotocol, "wsroute.v1.json");
});

test("a server that selects none of the offered subprotocols fails the handshake, as with any protocols", async (t) => {
  // The WHATWG WebSocket rules, which ws follows too: offered subprotocols, none
  // selected, no connection. So msgpack cannot fall back to an unnamed JSON.
  const sockets = [WebSocket, ...(typeof globalThis.WebSocket === "function" ? [undefined] : [])];
  for (const WebSocketImpl of sockets) {
    for (const options of [{}, { msgpack: null, protocols: ["chat.v2"] }]) {
      const { client } = open(t, "select-none", { WebSocket: WebSocketImpl, reconnect: false, ...options }, jsonServer.url);
      const error = await within(client.opened().catch((e) => e), "the refusal");
      assert.equal(error.code, 1006, String(error));
      assert.equal(client.subprotocol, null);
    }
  }
});

test("bad frames under msgpack are logged and dropped; the client keeps working", async (t) => {
  const { client, logger } = open(t, "bad-msgpack");
  assert.equal(await client.request("bad_binary_frames"), "sent");
  const expected = [
    /dropped a text frame .*"a text frame"/,
    /not msgpack .*: c1 20 69 73/,
    /not a msgpack map: "\[1,2,3\]"/,
    /reply with unknown id: .*999999.*<1 bytes>/,
    /event without a type/,
  ];
  assert.equal(logger.warnings.length, expected.length, logger.warnings.join("\n"));
  expected.forEach((pattern, i) => assert.match(logger.warnings[i], pattern));
  assert.deepEqual(logger.errors, []);
  assert.equal(client.state, "open");
  assert.equal(await client.request("echo", "ok"), "ok");
});

test("a codec that fails never throws out of the client", async (t) => {
  // decode throws: every frame is dropped with a warning, so the request times out.
  const broken = {
    encode,
    decode() {
      throw new Error("decoder bug");
    },
  };
  const { client, logger } = open(t, "bad-decoder", { msgpack: broken });
  await client.opened();
  await assert.rejects(client.request("echo", 1, { timeout: 200 }), RequestTimeoutError);
  assert.match(logger.warnings[0], /not msgpack \(decoder bug\)/);
  assert.equal(client.state, "open");

  // encode throws, or returns something other than bytes: the call rejects with it.
  let mode = "throw";
  const flaky = {
    encode: (value) => {
      if (mode === "throw") throw new Error("encoder bug");
      return mode === "text" ? JSON.stringify(value) : encode(value);
    },
    decode,
  };
  const { client: other } = open(t, "bad-encoder", { msgpack: flaky });
  await other.opened();
  await assert.rejects(other.request("echo", 1), /encoder bug/);
  mode = "text";
  await assert.rejects(other.request("echo", 1), /msgpack\.encode must return a Uint8Array/);
  mode = "bytes";
  assert.equal(await other.request("echo", 1), 1);
});

test("data follows JSON's rules, with Uint8Array the one addition; mistakes fail at the call", async (t) => {
  const { client } = open(t, "plain");
  const reply = await client.request("echo", {
    when: new Date(0),
    skipped: undefined,
    nan: NaN,
    list: [undefined, () => 1, Infinity],
    boxed: new Number(3),
    __proto__: { inherited: "not sent" },
  });
  assert.deepEqual(reply, { when: "1970-01-01T00:00:00.000Z", nan: null, list: [null, null, null], boxed: 3 });
  // An own "__proto__" key is sent as a key (the server's echo of it, though, is one
  // that @msgpack/msgpack's decoder refuses, so it is not read back here).
  const spy = frameSpy();
  const { client: spied } = open(t, "plain-proto", { WebSocket: spy.WebSocket });
  await spied.emit("echo", JSON.parse('{"__proto__": 1}'));
  assert.ok(Buffer.from(spy.sent[0]).includes("__proto__"));
  await assert.rejects(client.request("echo", 10n), /BigInt/);
  await assert.rejects(client.request("echo", new Int16Array(2)), /must be a Uint8Array, not Int16Array/);
  await assert.rejects(client.request("echo", new ArrayBuffer(2)), /must be a Uint8Array, not ArrayBuffer/);
  const cycle = { a: 1 };
  cycle.self = cycle;
  await assert.rejects(client.request("echo", cycle), /circular/);
  await assert.rejects(client.request("echo", () => 1), /not JSON/);
  const shared = { x: 1 };
  assert.deepEqual(await client.request("echo", [shared, shared]), [{ x: 1 }, { x: 1 }], "shared is not circular");
});

test("replay under msgpack: bytes belong to a request's identity, and are replayed as bytes", async (t) => {
  const { client } = open(t, "mp-replay");
  const states = recordStates(client);
  await client.request("echo", { b: new Uint8Array([1, 2]), a: 1 }, { replay: true });
  await client.request("echo", { a: 1, b: new Uint8Array([1, 2]) }, { replay: true }); // the same
  await client.request("echo", { a: 1, b: "AQI=" }, { replay: true }); // text, not bytes
  await client.request("echo", { a: 1, b: "dropped" }, { replay: true });
  assert.equal(client.forgetReplay("echo", { a: 1, b: "dropped" }), 1);

  const mark = states.changes.length;
  await client.request("kick", { code: 1012 });
  assert.equal((await states.next("reconnecting", mark)).code, 1012);
  await states.next("open", mark);
  const log = await client.request("history");
  assert.deepEqual(log.slice(4), [
    ["echo", { a: 1, b: new Uint8Array([1, 2]) }],
    ["echo", { a: 1, b: "AQI=" }],
  ]);
  assert.equal(client.forgetReplay("echo", { a: 1, b: Buffer.from([1, 2]) }), 1);
  assert.equal(client.forgetReplay("echo"), 1);
});

test(
  "Node's built-in WebSocket speaks msgpack too",
  { skip: typeof globalThis.WebSocket !== "function" && "this Node has no global WebSocket" },
  async (t) => {
    const { client, logger } = open(t, "builtin-msgpack", { WebSocket: undefined });
    const uploaded = await client.request("upload", { name: "n", content: ALL_BYTES });
    assert.deepEqual(uploaded.content, ALL_BYTES);
    assert.equal(client.subprotocol, MSGPACK);
    assert.equal(await client.request("bad_binary_frames"), "sent");
    assert.equal(logger.warnings.length, 5, logger.warnings.join("\n"));
  },
);

/** The ```js block of the "### msgpack" section of docs/clients.md. */
function docsExample() {
  const page = readFileSync(join(REPO, "docs", "clients.md"), "utf8");
  const section = page.split(/^### msgpack$/m)[1]?.split(/^##/m)[0];
  assert.ok(section, "docs/clients.md has a ### msgpack section");
  const blocks = [...section.matchAll(/^```js\n([\s\S]*?)^```$/gm)].map((match) => match[1]);
  assert.equal(blocks.length, 1, "one js block in it");
  return blocks[0];
}

test("docs/clients.md's msgpack example runs as written, against the items example", async (t) => {
  const items = await Server.start({ appDir: join(REPO, "examples", "items") });
  t.after(() => items.kill());
  // As a reader has it: a copy of wsroute.js next to the script, and the packages
  // installed (here, this directory's node_modules).
  const directory = mkdtempSync(join(tmpdir(), "wsroute-docs-"));
  t.after(() => rmSync(directory, { recursive: true, force: true }));
  copyFileSync(join(REPO, "wsroute", "static", "wsroute.js"), join(directory, "wsroute.js"));
  symlinkSync(join(HERE, "node_modules"), join(directory, "node_modules"), "dir");
  const code = docsExample();
  assert.ok(code.includes("ws://127.0.0.1:8000/"));
  writeFileSync(join(directory, "example.mjs"), code.replaceAll("ws://127.0.0.1:8000/", items.url));
  const result = spawnSync(process.execPath, [join(directory, "example.mjs")], {
    cwd: directory,
    encoding: "utf8",
    timeout: WAIT_MS,
  });
  assert.equal(result.status, 0, `${result.error ?? ""}${result.stdout}${result.stderr}`);
  // What the comments in the example say it prints.
  const shown = [...code.matchAll(/console\.log\(.*\);\s*\/\/ (.*)$/gm)].map((match) => match[1]);
  assert.deepEqual(result.stdout.trim().split("\n"), shown);
});
