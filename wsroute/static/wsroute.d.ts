/**
 * Type declarations for wsroute.js, wsroute's JavaScript client (hand-written; see
 * docs/clients.md). They need no DOM library and no @types/node.
 *
 * A client is generic over a route map, so that declarations generated from an app
 * type-check every request and event:
 *
 *     type Requests = {
 *       list_items: { data: null; reply: Item[] };
 *       create_item: { data: CreateItem; reply: Item };
 *     };
 *     type Events = { create_item: Item; welcome: { connection: string } };
 *     const client = connect<Requests, Events>("ws://127.0.0.1:8000/");
 *     const item = await client.request("create_item", { name: "apple" }); // Item
 *
 * Without a route map every type is accepted and data and replies are `unknown`.
 */

// -- route maps ---------------------------------------------------------------------

/** One request type: the `data` it sends and the `data` of its reply. */
export interface RequestSpec {
  data: unknown;
  reply: unknown;
}

/**
 * A map from request type to its {@link RequestSpec}. Written as a mapped type over
 * `R` so that interfaces (which have no index signature) qualify as well as type
 * aliases: `Client<Requests>` checks that every entry of `Requests` is a RequestSpec.
 */
export type RequestMap<R = Record<string, RequestSpec>> = { [K in keyof R]: RequestSpec };

/** A map from event type to its `data`. Any object type qualifies. */
export type EventMap = object;

/** The route map of a client without one: any type, `unknown` data and replies. */
export type LooseRequests = { [type: string]: { data: unknown; reply: unknown } };

/** The event map of a client without one: any type, `unknown` data. */
export type LooseEvents = { [type: string]: unknown };

type DataOf<S> = S extends { data: infer D } ? D : unknown;
type ReplyOf<S> = S extends { reply: infer R } ? R : unknown;

/** `data` may be left out when its type admits `null` or `undefined` (and for `unknown`). */
type RequestArgs<D, O> = null extends D
  ? [data?: D, options?: O]
  : undefined extends D
    ? [data?: D, options?: O]
    : [data: D, options?: O];

/** An event as received: `{type, topic?, data}`, and `offset` and `epoch` where kept in history. */
export interface ServerEvent<T extends string = string, D = unknown> {
  type: T;
  /** The topic it was published to; absent for events sent to one connection. */
  topic?: string;
  data: D;
  /** Its number in the topic's history (1, 2, ... within `epoch`), when the app keeps one. */
  offset?: number;
  /** The run of the topic's history that `offset` counts in, when the app keeps one. */
  epoch?: string;
}

// -- recovery -----------------------------------------------------------------------

/** Where a topic stands for the client: the last event seen, by its `offset` within its `epoch`. */
export interface Position {
  offset: number;
  epoch: string;
}

/** The last position seen per topic, as `client.positions` returns it and the `positions` option takes it. */
export type Positions = { [topic: string]: Position };

/** Why a topic could not be recovered (`reason` of a `wsroute.recovery` event). */
export type RecoveryFailure =
  | "epoch_changed"
  | "too_old"
  | "no_history"
  | "unknown_offset"
  | "unavailable"
  | "busy"
  | "interrupted"
  | "broker_lost";

/**
 * The data of a `wsroute.recovery` event, which follows the events missed on a topic.
 * `recovered: false` means a gap that could not be filled: reload the topic's state.
 */
export type RecoveryData =
  | {
      recovered: true;
      /** The position from here on. */
      offset: number;
      epoch: string;
      /** How many missed events came before this one. */
      missed: number;
    }
  | {
      recovered: false;
      /** The topic's current position, the client's from here on; `null` when unknown (the old one stands). */
      offset: number | null;
      epoch: string | null;
      /** How many missed events came before this one (after which the gap showed). */
      missed: number;
      reason: RecoveryFailure;
    };

/** The `wsroute.recovery` event: always for a topic. */
export interface RecoveryEvent extends ServerEvent<"wsroute.recovery", RecoveryData> {
  topic: string;
}

/** Any event of an event map, as a union discriminated on `type`. */
export type AnyServerEvent<Events extends EventMap> = {
  [K in keyof Events & string]: ServerEvent<K, Events[K]>;
}[keyof Events & string];

/** A recorded request, as `onReplayError` reports it: a union discriminated on `type`. */
export type ReplayedRequest<Requests> = {
  [K in keyof Requests & string]: { type: K; data: DataOf<Requests[K]> };
}[keyof Requests & string];

// -- options ------------------------------------------------------------------------

/** The part of a WebSocket the client uses; browsers', Node's and `ws`'s all qualify. */
export interface WebSocketLike {
  readonly readyState: number;
  /** The subprotocol the server selected (`""` for none). */
  readonly protocol?: string;
  /**
   * A string under JSON; a Uint8Array (a binary frame) under msgpack. Spelled as a
   * view of an ArrayBuffer so that the DOM's WebSocket, which takes no views of a
   * SharedArrayBuffer, qualifies with TypeScript before and after 5.7.
   */
  send(data: string | (ArrayBufferView & { readonly buffer: ArrayBuffer })): void;
  close(code?: number, reason?: string): void;
  addEventListener(type: string, listener: (event: any) => void): void;
}

/** A WebSocket class: the global `WebSocket`, or `WebSocket` from the `ws` package. */
export type WebSocketConstructor = new (url: string, protocols?: string | string[]) => WebSocketLike;

/** Where dropped bad input and listener errors are reported; `console` qualifies. */
export interface Logger {
  warn(...args: unknown[]): void;
  error?(...args: unknown[]): void;
}

/**
 * A msgpack codec for the `wsroute.v1.msgpack` subprotocol, such as `{ encode, decode }`
 * from the `@msgpack/msgpack` package. `encode` gets plain data (JSON's values, and
 * Uint8Arrays for binary) and must return the bytes; `decode` gets one binary frame.
 */
export interface MsgpackCodec {
  encode: (value: unknown) => Uint8Array;
  decode: (data: Uint8Array) => unknown;
}

/** A token, or `null`/`undefined`/`""` for none. */
export type Token = string | null | undefined;

export interface ReconnectOptions {
  /** The first delay's cap, in ms (500). */
  initial?: number;
  /** The largest delay, in ms (30000). */
  max?: number;
  /** The cap's growth per attempt (2). */
  factor?: number;
  /** Reconnection attempts in a row before giving up and closing (Infinity). */
  maxAttempts?: number;
  /** Close codes that reconnect (replaces {@link RETRY_CODES}). */
  retryCodes?: readonly number[];
  /** HTTP statuses of a refused handshake that reconnect, `ws` only (replaces {@link RETRY_STATUSES}). */
  retryStatuses?: readonly number[];
}

export interface ClientOptions {
  /** Sent as the `?token=` query parameter; a function is called before every attempt. */
  token?: Token | (() => Token | PromiseLike<Token>);
  /** The query parameter that carries the token ("token", as `bearer_auth` expects). */
  tokenParam?: string;
  /** Extra query parameters; `null`/`undefined` values are left out. */
  params?: { [name: string]: string | number | boolean | null | undefined };
  /**
   * WebSocket subprotocols to offer. `"wsroute.v1.msgpack"` only with `msgpack`, which
   * offers it first by itself.
   */
  protocols?: string | string[];
  /**
   * A msgpack codec: offer `wsroute.v1.msgpack` first, and speak msgpack (binary
   * frames, Uint8Array data as binary) on every connection where the server selects
   * it; JSON where it selects one of `protocols`. None by default: JSON only.
   */
  msgpack?: MsgpackCodec | null | undefined;
  /** The WebSocket class (default: the global `WebSocket`). */
  WebSocket?: WebSocketConstructor;
  /** Default timeout of `request()` and `emit()`, in ms (30000; Infinity for none). */
  requestTimeout?: number;
  /** Bound on one connection attempt (token callback and handshake), in ms (10000). */
  connectTimeout?: number;
  /** Backoff and retry rules, or `false` never to reconnect. */
  reconnect?: ReconnectOptions | false;
  /** Where bad input is reported (default `console`; `null` for nowhere). */
  logger?: Logger | null;
  /**
   * Track the last position of every topic whose events carry one, and present them
   * when connecting again, so that the server sends what was missed (true). `false`:
   * track and send nothing.
   */
  recover?: boolean;
  /** Positions to present from the first connection on, e.g. `client.positions` saved before a page reload. */
  positions?: Positions | null | undefined;
}

export interface RequestOptions {
  /** In ms, waiting for `open` included (default: the client's `requestTimeout`). */
  timeout?: number;
  /** Re-send this request on every reconnect once it has succeeded (e.g. a `join`). */
  replay?: boolean;
}

export interface EmitOptions {
  /** How long to wait for `open`, in ms (default: the client's `requestTimeout`). */
  timeout?: number;
}

export interface OnOptions {
  /** Only events published to this topic. */
  topic?: string;
}

export type ClientState = "connecting" | "open" | "reconnecting" | "closed";

export interface StateChange {
  readonly state: ClientState;
  /** The close code that caused `reconnecting` or `closed`; `null` otherwise. */
  readonly code: number | null;
  /** Its reason, possibly empty. */
  readonly reason: string;
  /** The HTTP status of a refused handshake (`ws` only); `null` otherwise. */
  readonly status: number | null;
  /** For `reconnecting`: which attempt comes next (from 1); 0 otherwise. */
  readonly attempt: number;
  /** For `reconnecting`: the wait before that attempt, in ms; `null` otherwise. */
  readonly delay: number | null;
}

// -- the client ---------------------------------------------------------------------

export class Client<
  Requests extends RequestMap<Requests> = LooseRequests,
  Events extends EventMap = LooseEvents,
> {
  constructor(url: string | { readonly href: string }, options?: ClientOptions);

  /** The current state. */
  readonly state: ClientState;

  /**
   * The subprotocol the server selected on the current (or last) connection; `null`
   * before the first one opens and when the server selected none. Messages are msgpack
   * exactly when it is `"wsroute.v1.msgpack"`.
   */
  readonly subprotocol: string | null;

  /**
   * The last position seen per topic (a copy), to save and pass back as the
   * `positions` option of a later client. Empty with `recover: false`.
   */
  readonly positions: Positions;

  /** Resolves when first open; rejects with ClosedError if closed for good before. */
  opened(): Promise<void>;

  /**
   * Send a request and resolve with its reply's data. Rejects with HandlerError,
   * TimeoutError (RequestTimeoutError), DisconnectedError or ClosedError.
   */
  request<K extends keyof Requests & string>(
    type: K,
    ...args: RequestArgs<DataOf<Requests[K]>, RequestOptions>
  ): Promise<ReplyOf<Requests[K]>>;

  /** Send a message without id (no reply); resolves once it is handed to the socket. */
  emit<K extends keyof Requests & string>(
    type: K,
    ...args: RequestArgs<DataOf<Requests[K]>, EmitOptions>
  ): Promise<void>;

  /**
   * Listen to the end of topics' recoveries (after a reconnect, or with `positions`):
   * `recovered: false` asks to reload the topic's state.
   */
  on(
    type: "wsroute.recovery",
    fn: (data: RecoveryData, event: RecoveryEvent) => void,
    options?: OnOptions,
  ): () => void;
  /** Listen to events of one type; returns a function that removes the listener. */
  on<K extends keyof Events & string>(
    type: K,
    fn: (data: Events[K], event: ServerEvent<K, Events[K]>) => void,
    options?: OnOptions,
  ): () => void;
  /** Listen to every event, `wsroute.recovery` ones included. */
  on(
    type: "*",
    fn: (data: Events[keyof Events] | RecoveryData, event: AnyServerEvent<Events> | RecoveryEvent) => void,
    options?: OnOptions,
  ): () => void;

  /** Observe state changes, in order; returns a function that removes the listener. */
  onState(fn: (change: StateChange) => void): () => void;

  /** Be told when a replayed request fails after a reconnect (it is then forgotten). */
  onReplayError(fn: (error: Error, request: ReplayedRequest<Requests>) => void): () => void;

  /** Stop replaying `type` with `data`, or every request of `type`; returns how many. */
  forgetReplay<K extends keyof Requests & string>(type: K, data?: DataOf<Requests[K]>): number;

  /** Stop presenting `topic`'s position (e.g. after leaving it); returns whether there was one. */
  forgetPosition(topic: string): boolean;

  /**
   * Close for good (code 1000 or 3000-4999, reason at most 123 bytes). The state is
   * `closed` at once; the promise resolves when the socket is closed, never rejects.
   */
  close(code?: number, reason?: string): Promise<void>;
}

/** Open a client; it connects at once and reconnects by the rules in `options.reconnect`. */
export function connect<
  Requests extends RequestMap<Requests> = LooseRequests,
  Events extends EventMap = LooseEvents,
>(url: string | { readonly href: string }, options?: ClientOptions): Client<Requests, Events>;

// -- errors -------------------------------------------------------------------------

/** Base class of the client's errors. */
export class WsrouteError extends Error {}

/** The server answered with an error reply. */
export class HandlerError extends WsrouteError {
  constructor(code: string, message: string, details?: unknown, type?: string);
  readonly name: "HandlerError";
  /** Stable and machine-readable: `not_found`, `invalid_data`, the app's own codes. */
  readonly code: string;
  /** `error.details`, when the server sent any (for `invalid_data`: `{path, message}[]`). */
  readonly details: unknown;
  /** The request's message type. */
  readonly type: string | undefined;
}

/** No reply within the timeout. Exported as both `TimeoutError` and `RequestTimeoutError`. */
export class RequestTimeoutError extends WsrouteError {
  constructor(type: string, timeout: number);
  readonly name: "RequestTimeoutError";
  readonly type: string;
  readonly timeout: number;
}
export { RequestTimeoutError as TimeoutError };

/** The connection dropped while the request waited for its reply. */
export class DisconnectedError extends WsrouteError {
  constructor(code: number, reason: string);
  readonly name: "DisconnectedError";
  readonly code: number;
  readonly reason: string;
}

/** The client is closed for good. */
export class ClosedError extends WsrouteError {
  constructor(code: number | null, reason: string);
  readonly name: "ClosedError";
  readonly code: number | null;
  readonly reason: string;
}

// -- reconnect rules ----------------------------------------------------------------

/** Close codes that reconnect by default: 1001, 1006, 1011, 1012, 1013, 1014. */
export const RETRY_CODES: readonly number[];

/** HTTP statuses of a refused handshake that reconnect by default: 408, 429, 500-599. */
export const RETRY_STATUSES: readonly number[];

/** The full-jitter delay before attempt `attempt` (from 1): random in [0, min(max, initial * factor^(attempt-1))]. */
export function backoffDelay(
  attempt: number,
  options?: { initial?: number; max?: number; factor?: number },
  random?: () => number,
): number;
