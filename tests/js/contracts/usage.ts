// Must compile: the declarations `wsroute typescript` makes of tests/contracts_app.py,
// used with the JavaScript client's type parameters. tests/test_contracts_typescript.py
// copies this file next to the generated app.ts and compiles both with tsc --noEmit.

import { connect, HandlerError } from "wsroute";
import type { Bytes, CreateItem, ErrorCode, Events, Item, Requests, Size, Tag } from "./app.js";

export async function usage(): Promise<void> {
  const client = connect<Requests, Events>("ws://127.0.0.1:8000/", { token: "user-ada" });
  const size: Size = "s";
  const tag: Tag = { name: "t" };
  const made: CreateItem = { name: "a", size, tags: [tag, { name: "u", weight: 2 }], where: [1, 2] };
  const item: Item = await client.request("create_item", made);
  await client.request("create_item", { name: "b", size: "l", colour: null, scores: { "1": 2 }, due: "2024-05-01" });
  const blob: Bytes = new Uint8Array([1]);
  await client.emit("create_item", { name: "c", size: "s", blob, colour: "red" });
  await client.request("create_item", { name: "d", size: "s", blob: "AQ==" }, { timeout: 1000 });
  const cached: Item | null = await client.request("item", { id: item.id });
  const got: Item = await client.request("get_item", { id: 1 });
  const rooms: string[] = await client.request("join", { room: "r" });
  const line = await client.request("say", "hello");
  const shouted: string = await client.request("shout", "hey");
  const first: number[] = await client.request("page");
  const third: number[] = await client.request("page", 3);
  await client.request("page", null);
  const nothing: null = await client.request("ping");
  const anything: unknown = await client.request("echo", { any: ["thing"] });
  const pair: [number, string] = await client.request("a strange/type: é", true);
  await client.request("a strange/type: é");
  client.on("create_item", (data, event) => void [data.made, data.size, event.topic]);
  client.on("item", (data) => void data.name);
  client.on("say", (data) => void data.room, { topic: "room:r" });
  client.on("said", (data) => void data.text);
  client.on("welcome", (data) => void data["user"]);
  client.on("tick", (n) => void (n + 1));
  client.on("broker_state", (data) => void (data.state === "connected"));
  client.on("wsroute.join", (entry) => void [entry.connection, entry.user, entry.meta]);
  const here = await client.request("wsroute.presence", { topic: "room:r" });
  const stats = await client.request("wsroute.presence_stats", { topic: "room:r" });
  void [here[0]?.connection, here[0]?.user, here[0]?.meta, stats.connections + stats.users];
  client.on("wsroute.recovery", (data) => void data.recovered);
  client.on("*", (_data, event) => void event.type);
  try {
    await client.request("get_item", { id: 9 });
  } catch (error) {
    if (error instanceof HandlerError) {
      const known: ErrorCode | string = error.code;
      void known;
    }
  }
  void [cached, got, rooms, line.text, shouted, first, third, nothing, anything, pair];
}
