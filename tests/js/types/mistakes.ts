// Must NOT compile: each line marked `// error` is a mistake the declarations catch.
// The test compiles this file and expects errors on exactly the marked lines.

import { connect } from "../../../wsroute/static/wsroute.js";
import type { Events, Item, Requests } from "./routes.js";

export async function mistakes(): Promise<void> {
  const client = connect<Requests, Events>("ws://127.0.0.1:8000/");
  await client.request("create_item", { nam: "x" }); // error
  await client.request("create_item", { name: 1 }); // error
  await client.request("create_item"); // error
  await client.request("no_such_type", null); // error
  await client.request("get_item", { id: "1" }); // error
  const wrong: Item = await client.request("list_items"); // error
  await client.request("list_items", null, { timeout: "5s" }); // error
  await client.emit("create_item", { nam: "x" }); // error
  client.on("create_item", (data: string) => void data); // error
  client.on("no_such_event", () => {}); // error
  client.on("create_item", (data) => void data.colour); // error
  client.forgetReplay("get_item", { id: "1" }); // error
  client.onReplayError((_error, request) => void request.data.id); // error
  connect("ws://x/", { reconnect: { initial: "fast" } }); // error
  connect("ws://x/", { token: 42 }); // error
  connect("ws://x/", { WebSocket: { not: "a class" } }); // error
  connect<{ broken: { data: string } }>("ws://x/"); // error
  connect("ws://x/", { msgpack: { encode: (value: unknown) => JSON.stringify(value), decode: JSON.parse } }); // error
  connect("ws://x/", { msgpack: { encode: (_value: unknown) => new Uint8Array(0) } }); // error
  const selected: string = client.subprotocol; // error
  client.subprotocol = "wsroute.v1.msgpack"; // error
  connect("ws://x/", { recover: "yes" }); // error
  connect("ws://x/", { positions: { "room:1": [57, "k3JqbW1x"] } }); // error
  connect("ws://x/", { positions: { "room:1": { offset: "57", epoch: "k3JqbW1x" } } }); // error
  client.positions = {}; // error
  client.on("wsroute.recovery", (data) => void data.reason); // error
  client.on("wsroute.recovery", (data) => { const offset: number = data.offset; void offset; }); // error
  client.on("wsroute.recovery", (_data, event) => { const topic: number = event.topic; void topic; }); // error
  client.forgetPosition(1); // error
  void selected;
  void wrong;
}
