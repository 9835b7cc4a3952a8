// Must compile: typical uses of wsroute.d.ts, typed and loose, in a browser and in Node.

import { decode, encode } from "@msgpack/msgpack";
import { WebSocket as NodeWebSocket } from "ws";

import {
  Client,
  ClosedError,
  DisconnectedError,
  HandlerError,
  RequestTimeoutError,
  TimeoutError,
  backoffDelay,
  connect,
  type MsgpackCodec,
  type Positions,
  type RecoveryData,
  type RecoveryFailure,
  type StateChange,
} from "../../../wsroute/static/wsroute.js";
import type { Events, Item, ItemRef, Requests } from "./routes.js";

export async function typed(): Promise<void> {
  const client = connect<Requests, Events>("ws://127.0.0.1:8000/", {
    token: async () => "abc",
    params: { room: "lobby", page: 2, debug: undefined },
    WebSocket: NodeWebSocket,
    requestTimeout: 5000,
    reconnect: { initial: 100, max: 10000, factor: 2, maxAttempts: 10, retryCodes: [1006, 4001] },
    logger: console,
  });
  await client.opened();
  const items: Item[] = await client.request("list_items");
  const same: Item[] = await client.request("list_items", null, { timeout: 1000 });
  const item: Item = await client.request("create_item", { name: "apple" }, { replay: true });
  const ref: ItemRef = await client.request("delete_item", { id: item.id });
  const found: Item[] = await client.request("search");
  const found2: Item[] = await client.request("search", { q: "a" });
  await client.emit("create_item", { name: "pear" });
  const off = client.on("create_item", (data, event) => {
    const name: string = data.name;
    const type: "create_item" = event.type;
    const topic: string | undefined = event.topic;
    void [name, type, topic];
  }, { topic: "items" });
  off();
  client.on("*", (_data, event) => {
    if (event.type === "welcome") {
      const connection: string = event.data.connection; // narrowed by type
      void connection;
    }
  });
  client.onState(({ state, code, reason }: StateChange) => {
    if (state === "reconnecting" || state === "closed") console.log(code, reason);
  });
  client.onReplayError((error, request) => {
    if (request.type === "get_item") console.log(error.message, request.data.id); // narrowed
  });
  const forgotten: number = client.forgetReplay("get_item", { id: 1 }) + client.forgetReplay("get_item");
  const state: "connecting" | "open" | "reconnecting" | "closed" = client.state;
  await client.close(1000, "bye");
  void [items, same, ref, found, found2, forgotten, state];
}

export async function loose(): Promise<void> {
  // No route map: any type, unknown data and replies.
  const client: Client = connect("wss://example.com/ws", { token: "abc", WebSocket: globalThis.WebSocket });
  const reply: unknown = await client.request("anything", { at: "all" });
  await client.request("no_data");
  client.on("whatever", (data: unknown) => void data);
  client.on("*", (data, event) => void [data, event.type]);
  void reply;
  const relative = new Client<Requests>(new URL("ws://127.0.0.1:8000/"), { reconnect: false, logger: null });
  await relative.request("get_item", { id: 1 });
}

export async function msgpack(): Promise<void> {
  // A codec from @msgpack/msgpack, in a browser and in Node; bytes as Uint8Array.
  const codec: MsgpackCodec = { encode, decode };
  const client = connect<Requests, Events>("ws://127.0.0.1:8000/", { msgpack: { encode, decode }, protocols: ["chat.v2"] });
  const node = connect("ws://127.0.0.1:8000/", { WebSocket: NodeWebSocket, msgpack: codec });
  const plain = connect("ws://127.0.0.1:8000/", { msgpack: null });
  const subprotocol: string | null = client.subprotocol;
  const reply: unknown = await node.request("upload", { name: "a", content: new Uint8Array([1, 2]) });
  void [subprotocol, reply, plain];
}

export async function recovery(saved: string | null): Promise<void> {
  // Positions saved before a page reload (sessionStorage in a browser), typed and loose.
  const positions: Positions = saved === null ? {} : (JSON.parse(saved) as Positions);
  const client = connect<Requests, Events>("ws://127.0.0.1:8000/", { positions, recover: true });
  const off = client.on("wsroute.recovery", (data, event) => {
    const topic: string = event.topic; // always there
    const missed: number = data.missed;
    if (data.recovered) {
      const offset: number = data.offset;
      const epoch: string = data.epoch;
      void [offset, epoch];
    } else {
      const reason: RecoveryFailure = data.reason;
      const offset: number | null = data.offset;
      if (reason === "epoch_changed" || reason === "too_old") console.log("reload", topic, offset);
    }
    void missed;
  }, { topic: "room:lobby" });
  off();
  client.on("create_item", (_data, event) => {
    const offset: number | undefined = event.offset;
    const epoch: string | undefined = event.epoch;
    void [offset, epoch];
  });
  client.on("*", (_data, event) => {
    if (event.type === "wsroute.recovery" && !event.data.recovered) console.log(event.data.reason);
  });
  const now: Positions = client.positions;
  const lobby: { offset: number; epoch: string } | undefined = now["room:lobby"];
  const forgot: boolean = client.forgetPosition("room:lobby");
  const loose = connect("ws://127.0.0.1:8000/", { recover: false, positions: null });
  loose.on("wsroute.recovery", (data: RecoveryData) => void data.missed);
  void [lobby, forgot];
}

export function errors(error: unknown): string {
  if (error instanceof HandlerError) return `${error.code} ${error.message} ${String(error.details)} ${error.type}`;
  if (error instanceof TimeoutError) return `${error.type} ${error.timeout}`;
  if (error instanceof RequestTimeoutError) return error.name;
  if (error instanceof DisconnectedError) return `${error.code} ${error.reason}`;
  if (error instanceof ClosedError) return `${error.code ?? "-"} ${error.reason}`;
  return String(backoffDelay(3, { initial: 10 }, Math.random));
}
