// Must NOT compile: each line marked `// error TSnnnn` is a mistake the generated
// declarations of tests/contracts_app.py catch, with that error code.

import { connect } from "wsroute";
import type { CreateItem, Events, Item, Requests, Size } from "./app.js";

export async function mistakes(): Promise<void> {
  const client = connect<Requests, Events>("ws://127.0.0.1:8000/");
  await client.request("create_item", { nam: "x" }); // error TS2561
  await client.request("create_item", { name: "x" }); // error TS2741
  await client.request("create_item", { name: "x", size: "m" }); // error TS2322
  await client.request("create_item", { name: "x", size: "s", colour: "blue" }); // error TS2322
  await client.request("create_item", { name: "x", size: "s", where: [1] }); // error TS2322
  await client.request("create_item", { name: "x", size: "s", tags: [{ weight: 1 }] }); // error TS2741
  await client.request("create_item", { name: "x", size: "s", blob: 1 }); // error TS2322
  await client.request("get_item", { id: "1" }); // error TS2322
  await client.request("get_item"); // error TS2554
  await client.request("no_such_type"); // error TS2345
  await client.request("ping", 1); // error TS2345
  await client.request("say", { text: "hi" }); // error TS2345
  const item: Item = await client.request("item", { id: 1 }); // error TS2322
  const pair: [string, number] = await client.request("a strange/type: é", true); // error TS2322
  const size: Size = "m"; // error TS2322
  const made: CreateItem = { name: "x", size: "s", extra: 1 }; // error TS2353
  client.on("create_item", (data: string) => void data); // error TS2769
  client.on("no_such_event", () => {}); // error TS2769
  client.on("said", (data) => void data.nick); // error TS2339
  client.on("tick", (n: string) => void n); // error TS2769
  await client.request("wsroute.presence", { room: "r" }); // error TS2353
  const users: string = (await client.request("wsroute.presence_stats", { topic: "t" })).users; // error TS2322
  void [item, pair, size, made, users];
}
