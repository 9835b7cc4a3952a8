/**
 * wsroute's JavaScript client: one dependency-free ES module (ES2020), no build step.
 *
 * Speaks wire protocol v1 (docs/protocol.md): every message is one JSON object in
 * one text frame; a frame with an `ok` key is a reply, one without is an event. Given
 * a msgpack codec (the `msgpack` option), it offers the `wsroute.v1.msgpack`
 * subprotocol, and on a connection where the server selects it every message is one
 * msgpack map in one binary frame instead; the module itself bundles no codec.
 * Works in browsers (the global `WebSocket`) and in Node >= 18 with the `ws`
 * package (or Node's own global `WebSocket`). The API mirrors the Python client;
 * docs/clients.md is the user's reference and wsroute.d.ts its types.
 *
 * Where the app keeps a topic's history (docs/history.md), its events carry an
 * `offset` and an `epoch`: the client keeps the last of each topic and presents them
 * when it connects again (the `wsroute.recover` query parameter), so that the server
 * sends what it missed before live events, then a `wsroute.recovery` event.
 *
 *     import { connect } from "/wsroute.js";
 *     const client = connect("ws://127.0.0.1:8000/", { token: "abc" });
 *     const item = await client.request("create_item", { name: "apple" });
 *
 * The file sticks to ES2020 syntax (no class fields, no `#private`), so it runs
 * unchanged in every browser from 2020 on; internal members are prefixed `_` and
 * left out of wsroute.d.ts.
 *
 * @module wsroute
 */

/** WebSocket.readyState values; read as numbers, since not every implementation has the statics. */
const CONNECTING = 0;
const OPEN = 1;

/**
 * Close codes after which the client reconnects, unless `reconnect.retryCodes` says
 * otherwise: going away (1001), abnormal closure without a close frame (1006: a
 * dropped TCP connection or a failed attempt), server error (1011), service restart
 * (1012), try again later (1013), bad gateway (1014). Every other code means the
 * server ended the session on purpose (1000, policy 1008, the app's 3000-4999), and
 * reconnecting would only be refused again.
 * @type {readonly number[]}
 */
export const RETRY_CODES = Object.freeze([1001, 1006, 1011, 1012, 1013, 1014]);

/**
 * HTTP statuses of a refused handshake after which the client reconnects: request
 * timeout (408), too many requests (429) and every server error (5xx). A 400, 401,
 * 403 or 404 will not change by retrying. Only visible with the `ws` package: a
 * browser reports any refused handshake as close code 1006.
 * @type {readonly number[]}
 */
export const RETRY_STATUSES = Object.freeze([
  408,
  429,
  ...Array.from({ length: 100 }, (_, i) => 500 + i),
]);

const RECONNECT_DEFAULTS = Object.freeze({
  initial: 500,
  max: 30000,
  factor: 2,
  maxAttempts: Infinity,
  retryCodes: RETRY_CODES,
  retryStatuses: RETRY_STATUSES,
});

/** setTimeout fires at once for delays above 2^31 - 1 ms, so longer ones mean "no timer". */
const MAX_TIMER_MS = 2147483647;
/** How many timed-out request ids are remembered, so their late replies drop quietly. */
const LATE_IDS_KEPT = 1024;
/** How long `close()` waits for the close handshake before dropping the socket. */
const CLOSE_WAIT_MS = 5000;
/** How much of a bad frame a warning quotes. */
const PREVIEW_CHARS = 120;
/** The subprotocol of msgpack messages (docs/protocol.md#subprotocols). */
const MSGPACK = "wsroute.v1.msgpack";
/**
 * The key that stands for binary data in a replayed request's identity: a key no
 * JSON sent by hand is likely to have, so `{data: bytes}` and `{data: "AQI="}` stay
 * two different requests.
 */
const BYTES_KEY = "\u0000bytes";
/** The query parameter in which the client presents the positions it saw (docs/history.md). */
const RECOVER_PARAM = "wsroute.recover";
/** The event that ends a topic's recovery: recovered or not, and the position from then on. */
const RECOVERY_TYPE = "wsroute.recovery";
/**
 * The most topics whose positions are kept and presented: what the server takes
 * (`MAX_RECOVER_TOPICS` in wsroute/_protocol.py); one more and it refuses the
 * handshake with 400, which does not reconnect.
 */
const MAX_POSITIONS = 256;
/**
 * The most characters `wsroute.recover` may take in the URL, encoded: about 200
 * topics of 10 characters. The server reads at most 16 KiB of request head, and the
 * path, the token, cookies and the browser's own headers need their share of it: a
 * longer head is refused with 400, which does not reconnect.
 */
const MAX_RECOVER_CHARS = 10240;
/** The longest epoch the server takes back (its own are at most 12 characters). */
const MAX_EPOCH_CHARS = 64;

// -- errors ---------------------------------------------------------------------------

/** Base class of every error this module raises, for one `instanceof` check. */
export class WsrouteError extends Error {}

/**
 * The server answered a request with an error reply. `code` is stable and meant for
 * programs (`not_found`, `invalid_data`, the app's own codes); `message` is for humans.
 */
export class HandlerError extends WsrouteError {
  /**
   * @param {string} code the error reply's `error.code`
   * @param {string} message the error reply's `error.message`
   * @param {unknown} [details] `error.details`, when the server sent any
   * @param {string} [type] the request's message type
   */
  constructor(code, message, details, type) {
    super(message);
    this.code = code;
    this.details = details;
    this.type = type;
  }
}

/**
 * No reply within the request's timeout (waiting for the connection included). The
 * request may still run on the server; its late reply is dropped quietly. Exported
 * as `TimeoutError` too; its `name` is `RequestTimeoutError` so that logs do not
 * confuse it with the DOM's `TimeoutError` (a DOMException from AbortSignal.timeout).
 */
export class RequestTimeoutError extends WsrouteError {
  /**
   * @param {string} type the request's message type
   * @param {number} timeout the timeout that expired, in ms
   */
  constructor(type, timeout) {
    super(`${type}: no reply within ${timeout} ms`);
    this.type = type;
    this.timeout = timeout;
  }
}

export { RequestTimeoutError as TimeoutError };

/**
 * The connection dropped while the request waited for its reply. Whether the server
 * handled it is unknown, so it is not re-sent: retry it if it is safe to.
 */
export class DisconnectedError extends WsrouteError {
  /**
   * @param {number} code the close code (1006 when the connection just dropped)
   * @param {string} reason the close reason, possibly empty
   */
  constructor(code, reason) {
    super(`disconnected (${code}${reason ? ` ${reason}` : ""}) before the reply came`);
    this.code = code;
    this.reason = reason;
  }
}

/** The client is closed for good: by `close()`, by the server, or after its last attempt. */
export class ClosedError extends WsrouteError {
  /**
   * @param {number | null} code the close code, when there was a connection to close
   * @param {string} reason the close reason, possibly empty
   */
  constructor(code, reason) {
    super(`client closed${code === null ? "" : ` (${code}${reason ? ` ${reason}` : ""})`}`);
    this.code = code;
    this.reason = reason;
  }
}

// On the prototypes rather than set in the constructors, so that the stack trace,
// captured inside super(), already starts with the right name, and so that minifiers
// that rename classes leave the names alone.
for (const [cls, name] of [
  [WsrouteError, "WsrouteError"],
  [HandlerError, "HandlerError"],
  [RequestTimeoutError, "RequestTimeoutError"],
  [DisconnectedError, "DisconnectedError"],
  [ClosedError, "ClosedError"],
]) {
  Object.defineProperty(cls.prototype, "name", { value: name, writable: true, configurable: true });
}

// -- helpers --------------------------------------------------------------------------

/**
 * The delay before reconnection attempt `attempt` (1, 2, ...): "full jitter", a
 * uniformly random wait between 0 and `min(max, initial * factor^(attempt-1))` ms.
 * Randomising the whole interval spreads out clients that lost the same server at
 * the same moment, so a restarted server is not hit by all of them at once.
 *
 * @param {number} attempt the attempt number, from 1
 * @param {{initial?: number, max?: number, factor?: number}} [options]
 * @param {() => number} [random] a source of numbers in [0, 1), for tests
 * @returns {number} the delay in ms, within [0, max]
 */
export function backoffDelay(attempt, options = {}, random = Math.random) {
  const { initial = RECONNECT_DEFAULTS.initial, max = RECONNECT_DEFAULTS.max } = options;
  const factor = options.factor ?? RECONNECT_DEFAULTS.factor;
  const cap = Math.min(max, initial * Math.pow(factor, Math.max(0, attempt - 1)));
  return random() * cap;
}

/**
 * Open a client; it connects right away and keeps reconnecting (see docs/clients.md).
 * Listeners registered in the same tick still see the first `connecting` state.
 *
 * @param {string | URL} url `ws://` or `wss://`; in a browser also relative to the page
 *   (`"/ws"`), with `http(s):` taken as `ws(s):`
 * @param {object} [options] see `ClientOptions` in wsroute.d.ts
 * @returns {Client}
 */
export function connect(url, options) {
  return new Client(url, options);
}

function noop() {}

function isThenable(value) {
  return value !== null && typeof value === "object" && typeof value.then === "function";
}

function checkTimeout(value, name) {
  if (typeof value !== "number" || !(value > 0)) {
    throw new TypeError(`${name} must be a positive number of ms (or Infinity), not ${value}`);
  }
  return value;
}

/** A timer that may be "never": undefined for an infinite or over-long delay. */
function startTimer(fn, ms) {
  return ms > MAX_TIMER_MS ? undefined : setTimeout(fn, ms);
}

function checkReconnect(reconnect) {
  if (reconnect === false) return null;
  const merged = { ...RECONNECT_DEFAULTS, ...(reconnect ?? {}) };
  for (const name of ["initial", "max", "factor"]) {
    if (typeof merged[name] !== "number" || !(merged[name] >= 0)) {
      throw new TypeError(`reconnect.${name} must be a number >= 0, not ${merged[name]}`);
    }
  }
  if (typeof merged.maxAttempts !== "number" || !(merged.maxAttempts >= 0)) {
    throw new TypeError(`reconnect.maxAttempts must be a number >= 0, not ${merged.maxAttempts}`);
  }
  for (const name of ["retryCodes", "retryStatuses"]) {
    if (!Array.isArray(merged[name])) {
      throw new TypeError(`reconnect.${name} must be an array of numbers`);
    }
  }
  return merged;
}

/**
 * The `msgpack` option: `null` for none, else the user's `{encode, decode}`, checked
 * now so that a mistake fails at `connect()` rather than on the first message.
 */
function checkMsgpack(codec) {
  if (codec == null) return null;
  const example = 'e.g. import { encode, decode } from "@msgpack/msgpack"';
  if (typeof codec !== "object" && typeof codec !== "function") {
    throw new TypeError(`msgpack must be a codec { encode, decode }, ${example}`);
  }
  for (const name of ["encode", "decode"]) {
    if (typeof codec[name] !== "function") {
      throw new TypeError(`msgpack.${name} must be a function, not ${typeof codec[name]}: ${example}`);
    }
  }
  return { encode: codec.encode, decode: codec.decode };
}

/**
 * The subprotocols to offer. With a codec, `wsroute.v1.msgpack` comes first (once);
 * without one, the user's list goes as given, but it must not name msgpack: the
 * server would select it and refuse every text frame the client sends (1003).
 *
 * Offering any subprotocol means the server must select one: browsers, Node's
 * WebSocket and `ws` alike fail a handshake whose answer selects none (WHATWG's
 * WebSocket rules), and nothing tells the client why. So with a codec the client
 * reaches servers that select msgpack or one of the user's `protocols`; JSON is
 * not offered by name, as a wsroute app would prefer it to msgpack.
 */
function offeredProtocols(protocols, codec) {
  const list = [].concat(protocols);
  if (codec === null) {
    if (list.includes(MSGPACK)) {
      throw new TypeError(`to speak ${MSGPACK}, pass a codec as the msgpack option rather than in protocols`);
    }
    return protocols;
  }
  return [MSGPACK, ...list.filter((name) => name !== MSGPACK)];
}

function resolveUrl(url) {
  const base = globalThis.location === undefined ? undefined : globalThis.location.href;
  const text = url !== null && typeof url === "object" && typeof url.href === "string" ? url.href : String(url);
  let parsed;
  try {
    parsed = new URL(text, base);
  } catch (_) {
    const hint = base === undefined && !/^[a-z][a-z0-9+.-]*:/i.test(text)
      ? " (a relative URL needs a page to resolve against: outside a browser, give the whole URL, such as ws://127.0.0.1:8000/)"
      : "";
    throw new TypeError(`invalid WebSocket URL: ${url}${hint}`);
  }
  if (parsed.protocol === "http:") parsed.protocol = "ws:";
  else if (parsed.protocol === "https:") parsed.protocol = "wss:";
  if (parsed.protocol !== "ws:" && parsed.protocol !== "wss:") {
    throw new TypeError(`a WebSocket URL starts with ws:// or wss://, not ${parsed.protocol}//`);
  }
  parsed.hash = "";
  return parsed;
}

/**
 * JSON with object keys sorted: the identity of a replayed request, so that
 * `{a: 1, b: 2}` and `{b: 2, a: 1}` are recorded once. With `bytes`, for data made
 * by `toPlain`, a Uint8Array is `{"\u0000bytes": base64}`; without, it is whatever
 * JSON makes of it, as before msgpack.
 */
function canonicalJson(value, bytes = false) {
  return JSON.stringify(value, (_, item) => {
    if (bytes && isBytes(item)) return { [BYTES_KEY]: base64(item) };
    if (item === null || typeof item !== "object" || Array.isArray(item)) return item;
    const sorted = {};
    for (const key of Object.keys(item).sort()) sorted[key] = item[key];
    return sorted;
  });
}

function preview(text) {
  return text.length > PREVIEW_CHARS ? `${JSON.stringify(text.slice(0, PREVIEW_CHARS))}...` : JSON.stringify(text);
}

/** A warning's quote of a frame: its text, or for a decoded msgpack frame its JSON (bytes as `<n bytes>`). */
function show(raw) {
  if (typeof raw === "string") return preview(raw);
  let text;
  try {
    text = JSON.stringify(raw, (_, item) => (isBytes(item) ? `<${item.length} bytes>` : item));
  } catch (_) {
    text = String(raw); // a BigInt from a codec told to make them
  }
  return preview(String(text));
}

/** The first bytes of a binary frame in hex, for a warning. */
function hexPreview(bytes) {
  const shown = Array.from(bytes.subarray(0, PREVIEW_CHARS / 3), (byte) => byte.toString(16).padStart(2, "0"));
  return `${shown.join(" ")}${bytes.length > shown.length ? " ..." : ""}`;
}

/** A Uint8Array (a Node Buffer included), from this realm or another. */
function isBytes(value) {
  return ArrayBuffer.isView(value) && Object.prototype.toString.call(value) === "[object Uint8Array]";
}

/** A binary frame's payload as a Uint8Array; null for a kind the client cannot read (a Blob). */
function bytesOf(raw) {
  if (raw instanceof ArrayBuffer) return new Uint8Array(raw);
  if (ArrayBuffer.isView(raw)) return new Uint8Array(raw.buffer, raw.byteOffset, raw.byteLength);
  return null;
}

/** Base64 (RFC 4648, padded), what the server reads as `bytes` from a JSON client. */
function base64(bytes) {
  let binary = "";
  // In slices, as fromCharCode takes its arguments on the stack.
  for (let start = 0; start < bytes.length; start += 0x8000) {
    binary += String.fromCharCode.apply(null, bytes.subarray(start, start + 0x8000));
  }
  return btoa(binary);
}

/**
 * `value` as JSON.stringify sees it, except that a Uint8Array stays binary: `toJSON`
 * called (a Date is its ISO text), `undefined`, functions and symbols left out of
 * objects and `null` in arrays, non-finite numbers `null`, boxed primitives unwrapped.
 * With the msgpack option, this is what is sent, in either format, so a message means
 * the same to the server whichever format the connection ends up speaking; the
 * codec's own extensions (a Date as a msgpack timestamp, which the server refuses)
 * never come into play. A Uint8Array is copied, so changing it after the call does
 * not change what is sent or replayed.
 *
 * @returns {unknown} the plain value; `undefined` where JSON would leave the value out
 * @throws {TypeError} for a BigInt, a cycle, or binary data other than a Uint8Array
 */
function toPlain(value, key, ancestors) {
  if (value !== null && (typeof value === "object" || typeof value === "bigint")) {
    if (!isBytes(value) && typeof value.toJSON === "function") value = value.toJSON(key);
  }
  if (value instanceof Number || value instanceof String || value instanceof Boolean) value = value.valueOf();
  switch (typeof value) {
    case "string":
    case "boolean":
      return value;
    case "number":
      return Number.isFinite(value) ? value : null;
    case "bigint":
      throw new TypeError("data holds a BigInt, which neither JSON nor wsroute's msgpack carries: send a string");
    case "object":
      break;
    default:
      return undefined; // undefined, a function, a symbol
  }
  if (value === null) return null;
  if (isBytes(value)) return new Uint8Array(value);
  if (ArrayBuffer.isView(value) || value instanceof ArrayBuffer) {
    throw new TypeError(`binary data must be a Uint8Array, not ${Object.prototype.toString.call(value).slice(8, -1)}`);
  }
  if (ancestors.has(value)) throw new TypeError("data is circular: it contains itself");
  ancestors.add(value);
  try {
    if (Array.isArray(value)) {
      const items = [];
      for (let index = 0; index < value.length; index += 1) {
        const item = toPlain(value[index], String(index), ancestors);
        items.push(item === undefined ? null : item);
      }
      return items;
    }
    const fields = {};
    for (const name of Object.keys(value)) {
      const item = toPlain(value[name], name, ancestors);
      if (item === undefined) continue;
      if (name === "__proto__") {
        // Defined, not assigned: assigning would set the prototype and lose the key.
        Object.defineProperty(fields, name, { value: item, enumerable: true, writable: true, configurable: true });
      } else {
        fields[name] = item;
      }
    }
    return fields;
  } finally {
    ancestors.delete(value);
  }
}

/** The JSON text of a `toPlain` value: bytes as base64, which a `bytes` field of the server accepts. */
function plainJson(plain) {
  return JSON.stringify(plain, (_, item) => (isBytes(item) ? base64(item) : item));
}

function utf8Length(text) {
  return new TextEncoder().encode(text).length;
}

/**
 * Call a user callback so that nothing it does escapes: a throw or a rejected
 * promise is logged, never thrown into the socket's event handlers.
 */
function callSafely(client, what, fn, args) {
  try {
    const result = fn(...args);
    if (isThenable(result)) {
      result.then(undefined, (error) => client._log("error", `wsroute: ${what} failed:`, error));
    }
  } catch (error) {
    client._log("error", `wsroute: ${what} threw:`, error);
  }
}

// -- recovery positions ---------------------------------------------------------------

/**
 * `{offset, epoch}` when the two make a position the server takes back (an integer
 * from 0 to 2^53 - 1 and a string of 1 to 64 characters), else `null`.
 */
function positionOf(offset, epoch) {
  const valid =
    Number.isSafeInteger(offset) &&
    offset >= 0 &&
    typeof epoch === "string" &&
    epoch.length > 0 &&
    epoch.length <= MAX_EPOCH_CHARS;
  return valid ? { offset, epoch } : null;
}

/** How many characters `text` takes as a query value (form-encoded, as URLSearchParams writes it). */
function queryLength(text) {
  return new URLSearchParams([["", text]]).toString().length - 1; // less the "="
}

/**
 * The last position the client saw per topic, to present in `wsroute.recover` when
 * it connects again, so that the server sends what it missed (docs/history.md).
 * Bounded: the Map's order is that of the latest updates, oldest first, and past
 * MAX_POSITIONS topics the one least recently heard of is dropped.
 */
class Positions {
  /**
   * @param {(message: string) => void} warn reports a cap that dropped topics
   * @param {unknown} seed the `positions` option: `{[topic]: {offset, epoch}}`, or null
   * @throws {TypeError} for a seed that is not such an object
   */
  constructor(warn, seed) {
    this._warn = warn;
    this._warned = new Set();
    /** @type {Map<string, {offset: number, epoch: string}>} */
    this._map = new Map();
    if (seed == null) return;
    const example = "{ [topic]: { offset, epoch } }, such as client.positions saved before";
    if (typeof seed !== "object" || Array.isArray(seed)) throw new TypeError(`positions must be ${example}`);
    for (const [topic, position] of Object.entries(seed)) {
      const checked =
        topic !== "" && position !== null && typeof position === "object"
          ? positionOf(position.offset, position.epoch)
          : null;
      if (checked === null) {
        throw new TypeError(
          `positions[${JSON.stringify(topic)}] must be { offset, epoch }: an integer >= 0 and a string` +
            ` of 1 to ${MAX_EPOCH_CHARS} characters, in ${example}`,
        );
      }
      this.set(topic, checked);
    }
  }

  /** Record where `topic` stands now; it becomes the most recently updated. */
  set(topic, position) {
    this._map.delete(topic);
    this._map.set(topic, position);
    if (this._map.size > MAX_POSITIONS) {
      this._map.delete(this._map.keys().next().value);
      this._warnOnce(
        "topics",
        `wsroute: positions are kept for the ${MAX_POSITIONS} most recently updated topics only;` +
          " the others will not be recovered after a reconnect",
      );
    }
  }

  /** Forget `topic`'s position; true if there was one. */
  delete(topic) {
    return this._map.delete(topic);
  }

  /** A copy, `{[topic]: {offset, epoch}}`, least recently updated first. */
  snapshot() {
    // fromEntries, not assignment: a topic named "__proto__" stays a key.
    return Object.fromEntries(Array.from(this._map, ([topic, { offset, epoch }]) => [topic, { offset, epoch }]));
  }

  /**
   * The `wsroute.recover` value, `{"topic": [offset, "epoch"], ...}`: the most recently
   * updated topics that fit in MAX_RECOVER_CHARS once in the URL. `null` when none.
   */
  query() {
    const pieces = [];
    let length = queryLength("{}");
    for (const [topic, { offset, epoch }] of Array.from(this._map).reverse()) {
      const piece = `${JSON.stringify(topic)}:${JSON.stringify([offset, epoch])}`;
      const cost = queryLength(piece) + (pieces.length > 0 ? queryLength(",") : 0);
      if (length + cost > MAX_RECOVER_CHARS) {
        this._warnOnce(
          "length",
          `wsroute: the positions of ${this._map.size} topics do not fit in the URL (${MAX_RECOVER_CHARS}` +
            " characters); the least recently updated are left out and will not be recovered",
        );
        continue; // a shorter, older one may still fit
      }
      pieces.push(piece);
      length += cost;
    }
    return pieces.length === 0 ? null : `{${pieces.reverse().join(",")}}`;
  }

  _warnOnce(key, message) {
    if (this._warned.has(key)) return;
    this._warned.add(key);
    this._warn(message);
  }
}

// -- the client -----------------------------------------------------------------------

/**
 * A client of one wsroute server. Create it with `connect()`.
 *
 * States: `connecting` (the first attempt) → `open` → `reconnecting` (after a drop,
 * while waiting and retrying, and while replaying) → `open` ..., and `closed` for good.
 */
export class Client {
  /**
   * @param {string | URL} url
   * @param {object} [options] see `ClientOptions` in wsroute.d.ts
   */
  constructor(url, options) {
    options = options ?? {};
    const WebSocketImpl = options.WebSocket ?? globalThis.WebSocket;
    if (typeof WebSocketImpl !== "function") {
      throw new TypeError(
        'wsroute: no WebSocket implementation: pass one, e.g. connect(url, { WebSocket: (await import("ws")).WebSocket })',
      );
    }
    if (options.token != null && typeof options.token !== "string" && typeof options.token !== "function") {
      throw new TypeError("token must be a string or a function returning one");
    }
    this._url = resolveUrl(url);
    this._WebSocket = WebSocketImpl;
    this._token = options.token ?? null;
    this._tokenParam = options.tokenParam ?? "token";
    this._params = { ...(options.params ?? {}) };
    this._msgpack = checkMsgpack(options.msgpack);
    this._protocols = offeredProtocols(options.protocols ?? [], this._msgpack);
    this._requestTimeout = checkTimeout(options.requestTimeout ?? 30000, "requestTimeout");
    this._connectTimeout = checkTimeout(options.connectTimeout ?? 10000, "connectTimeout");
    this._reconnect = checkReconnect(options.reconnect);
    this._logger = options.logger === undefined ? globalThis.console : options.logger;
    if (options.recover !== undefined && typeof options.recover !== "boolean") {
      throw new TypeError(`recover must be true or false, not ${options.recover}`);
    }
    if (options.recover === false && options.positions != null) {
      throw new TypeError("positions need recover: true (with recover: false no position is presented)");
    }
    /** The last position seen per topic; null with `recover: false`: nothing tracked or sent. */
    this._positions =
      options.recover === false ? null : new Positions((message) => this._log("warn", message), options.positions);

    this._state = "connecting";
    /** The live connection or the attempt in progress: {socket, open, status, timer}. */
    this._current = null;
    this._nextId = 1;
    /** Requests sent and waiting for their reply, by id. */
    this._pending = new Map();
    /** Requests and emits waiting for the state to turn `open`, in call order. */
    this._waiting = [];
    /** Ids of requests that timed out: their late replies are dropped without a warning. */
    this._late = new Set();
    /** Requests to replay on every reconnect, in the order they first succeeded. */
    this._replays = [];
    this._listeners = new Map();
    this._stateListeners = [];
    this._replayErrorListeners = [];
    this._stateQueue = [];
    this._delivering = false;
    this._attempt = 0;
    this._retryTimer = undefined;
    this._everOpened = false;
    this._subprotocol = null;
    this._openedPromise = new Promise((resolve, reject) => {
      this._resolveOpened = resolve;
      this._rejectOpened = reject;
    });
    this._openedPromise.catch(noop); // nobody has to call opened()

    // A microtask, so that onState listeners added right after connect() see "connecting".
    Promise.resolve().then(() => this._connect());
  }

  /** The current state: "connecting" | "open" | "reconnecting" | "closed". */
  get state() {
    return this._state;
  }

  /**
   * The subprotocol the server selected on the current (or last) connection, `null`
   * before the first one opens and when the server selected none. Messages are msgpack
   * exactly when it is "wsroute.v1.msgpack" (which needs the `msgpack` option).
   * @returns {string | null}
   */
  get subprotocol() {
    return this._subprotocol;
  }

  /**
   * The last position seen per topic, `{[topic]: {offset, epoch}}`: a copy, to save
   * (e.g. in sessionStorage) and pass back as the `positions` option of a later
   * client. Empty with `recover: false`.
   * @returns {{[topic: string]: {offset: number, epoch: string}}}
   */
  get positions() {
    return this._positions === null ? {} : this._positions.snapshot();
  }

  /**
   * Resolves when the client is first open (replays done); rejects with ClosedError
   * if it is closed for good before that.
   * @returns {Promise<void>}
   */
  opened() {
    return this._openedPromise;
  }

  /**
   * Send a request and wait for its reply. While the client is (re)connecting, the
   * request waits for `open` within its timeout rather than failing.
   *
   * @param {string} type the message type
   * @param {unknown} [data] any JSON value (`null` by default); with the `msgpack`
   *   option, Uint8Arrays too
   * @param {{timeout?: number, replay?: boolean}} [options] `timeout` in ms (default
   *   `requestTimeout`, Infinity for none); `replay: true` re-sends the request on
   *   every reconnect once it has succeeded, e.g. a `join` that subscribes to a topic
   * @returns {Promise<unknown>} the reply's data
   */
  request(type, data = null, options = {}) {
    return new Promise((resolve, reject) => {
      this._submit(type, data, options, true, resolve, reject);
    });
  }

  /**
   * Send a message without an id: no reply is matched (a failure is only logged).
   * Resolves once the frame is handed to the socket, waiting for `open` if needed.
   *
   * @param {string} type
   * @param {unknown} [data]
   * @param {{timeout?: number}} [options]
   * @returns {Promise<void>}
   */
  emit(type, data = null, options = {}) {
    return new Promise((resolve, reject) => {
      this._submit(type, data, options, false, resolve, reject);
    });
  }

  /**
   * Call `fn(data, event)` for every event of `type` (`"*"`: every event), optionally
   * only those published to `options.topic`. Listeners run in the order added.
   *
   * @param {string} type
   * @param {(data: unknown, event: {type: string, topic?: string, data: unknown, offset?: number, epoch?: string}) => void} fn
   * @param {{topic?: string}} [options]
   * @returns {() => void} removes the listener (idempotent)
   */
  on(type, fn, options = {}) {
    if (typeof type !== "string" || type === "") throw new TypeError("event type must be a non-empty string");
    if (typeof fn !== "function") throw new TypeError("listener must be a function");
    const listener = { fn, topic: (options ?? {}).topic };
    let list = this._listeners.get(type);
    if (list === undefined) {
      list = [];
      this._listeners.set(type, list);
    }
    list.push(listener);
    return () => {
      const current = this._listeners.get(type);
      if (current === undefined) return;
      const index = current.indexOf(listener);
      if (index >= 0) current.splice(index, 1);
      if (current.length === 0) this._listeners.delete(type);
    };
  }

  /**
   * Observe state changes, delivered in order: `{state, code, reason, status, attempt, delay}`.
   * `reconnecting` is reported before every wait, with the attempt number and delay.
   *
   * @param {(change: object) => void} fn
   * @returns {() => void} removes the listener
   */
  onState(fn) {
    return this._addTo(this._stateListeners, fn);
  }

  /**
   * Be told when a replayed request fails after a reconnect (an error reply or a
   * timeout). It is then forgotten, not retried. Without a listener, it is logged.
   *
   * @param {(error: Error, request: {type: string, data: unknown}) => void} fn
   * @returns {() => void} removes the listener
   */
  onReplayError(fn) {
    return this._addTo(this._replayErrorListeners, fn);
  }

  /**
   * Stop replaying requests of `type`: the one with `data`, or every one of that type
   * when `data` is omitted (`undefined`).
   *
   * @param {string} type
   * @param {unknown} [data]
   * @returns {number} how many were forgotten
   */
  forgetReplay(type, data) {
    const key = data === undefined ? undefined : this._replayKey(type, data, undefined);
    const before = this._replays.length;
    this._replays = this._replays.filter((entry) =>
      key === undefined ? entry.type !== type : entry.key !== key,
    );
    return before - this._replays.length;
  }

  /**
   * Stop presenting `topic`'s position, e.g. after leaving it: joined again later,
   * it then starts from live events instead of recovering what it missed meanwhile.
   *
   * @param {string} topic
   * @returns {boolean} whether there was a position to forget
   */
  forgetPosition(topic) {
    return this._positions !== null && this._positions.delete(topic);
  }

  /**
   * Close for good: pending and waiting requests reject with ClosedError and nothing
   * reconnects. The state is `closed` when this returns; the promise resolves once the
   * close handshake is done (at most a few seconds; it never rejects).
   *
   * @param {number} [code] 1000 or an application code in 3000-4999
   * @param {string} [reason] at most 123 bytes of UTF-8
   * @returns {Promise<void>}
   */
  close(code = 1000, reason = "") {
    if (code !== 1000 && !(Number.isInteger(code) && code >= 3000 && code <= 4999)) {
      throw new RangeError(`close code must be 1000 or 3000-4999, not ${code}`);
    }
    if (typeof reason !== "string" || utf8Length(reason) > 123) {
      throw new RangeError("close reason must be a string of at most 123 bytes of UTF-8");
    }
    if (this._state === "closed") return Promise.resolve();
    const current = this._current;
    this._current = null;
    let done = Promise.resolve();
    if (current !== null) {
      clearTimeout(current.timer);
      if (current.socket !== null) done = closeSocket(current.socket, code, reason);
    }
    this._finish(code, reason, null);
    return done;
  }

  // -- internals ------------------------------------------------------------------------

  _addTo(list, fn) {
    if (typeof fn !== "function") throw new TypeError("listener must be a function");
    const entry = { fn };
    list.push(entry);
    return () => {
      const index = list.indexOf(entry);
      if (index >= 0) list.splice(index, 1);
    };
  }

  _log(level, ...args) {
    const logger = this._logger;
    if (logger == null) return;
    const fn = typeof logger[level] === "function" ? logger[level] : logger.warn;
    if (typeof fn !== "function") return;
    try {
      fn.apply(logger, args);
    } catch (_) {
      // A broken logger must not break the client.
    }
  }

  /** Validate and encode a request or emit now, so mistakes surface at the call. */
  _submit(type, data, options, expectReply, resolve, reject) {
    options = options ?? {};
    if (typeof type !== "string" || type === "") {
      throw new TypeError("message type must be a non-empty string");
    }
    const timeout = checkTimeout(options.timeout ?? this._requestTimeout, "timeout");
    // Without a codec, the JSON text now, once. With one, the plain value now (so
    // mistakes still surface here) and the frame when it is sent, as the format
    // is the connection's, known only once it opens.
    let json = null;
    let plain;
    if (this._msgpack === null) {
      json = JSON.stringify(data === undefined ? null : data); // throws on BigInt, cycles
      if (json === undefined) throw new TypeError(`${type}: data is not JSON (a function or symbol)`);
    } else {
      plain = toPlain(data === undefined ? null : data, "", new Set());
      if (plain === undefined) throw new TypeError(`${type}: data is not JSON (a function or symbol)`);
    }
    if (this._state === "closed") {
      reject(new ClosedError(this._closeCode, this._closeReason));
      return;
    }
    const entry = {
      type,
      data,
      json,
      plain,
      expectReply,
      replay: expectReply && options.replay === true,
      id: 0,
      timeout,
      resolve,
      reject,
      timer: undefined,
      done: false,
    };
    entry.timer = startTimer(() => this._expire(entry), timeout);
    if (this._state === "open") this._transmit(entry);
    else this._waiting.push(entry);
  }

  /** Send `entry` on the current connection; its timer is already running. */
  _transmit(entry) {
    const current = this._current;
    const socket = current.socket;
    if (entry.expectReply) {
      entry.id = this._nextId++;
      this._pending.set(entry.id, entry);
    }
    try {
      socket.send(current.msgpack ? this._msgpackFrame(entry) : this._jsonFrame(entry));
    } catch (error) {
      this._settle(entry, false, error);
      return;
    }
    if (!entry.expectReply) this._settle(entry, true, undefined);
  }

  /** `entry` as a JSON text frame. */
  _jsonFrame(entry) {
    // With a codec, made at the first send on a JSON connection; kept for the next.
    if (entry.json === null) entry.json = plainJson(entry.plain);
    if (!entry.expectReply) return `{"type":${JSON.stringify(entry.type)},"data":${entry.json}}`;
    return `{"type":${JSON.stringify(entry.type)},"id":${entry.id},"data":${entry.json}}`;
  }

  /** `entry` as a msgpack binary frame: the same envelope, encoded by the user's codec. */
  _msgpackFrame(entry) {
    const message = entry.expectReply
      ? { type: entry.type, id: entry.id, data: entry.plain }
      : { type: entry.type, data: entry.plain };
    const frame = this._msgpack.encode(message);
    if (!isBytes(frame)) throw new TypeError("msgpack.encode must return a Uint8Array");
    return frame;
  }

  _settle(entry, ok, value) {
    if (entry.done) return;
    entry.done = true;
    clearTimeout(entry.timer);
    if (entry.id !== 0) this._pending.delete(entry.id);
    if (ok) entry.resolve(value);
    else entry.reject(value);
  }

  _expire(entry) {
    if (entry.done) return;
    if (entry.id !== 0 && this._pending.has(entry.id)) {
      this._late.add(entry.id);
      if (this._late.size > LATE_IDS_KEPT) this._late.delete(this._late.values().next().value);
    } else {
      const index = this._waiting.indexOf(entry);
      if (index >= 0) this._waiting.splice(index, 1);
    }
    this._settle(entry, false, new RequestTimeoutError(entry.type, entry.timeout));
  }

  /** One connection attempt: the token, the socket, and a bound on the whole handshake. */
  _connect() {
    this._retryTimer = undefined;
    if (this._state === "closed") return;
    if (!this._everOpened && this._attempt === 0) this._setState("connecting", {});
    const current = { socket: null, open: false, msgpack: false, status: null, timer: undefined };
    this._current = current;
    current.timer = startTimer(
      () => this._drop(current, 1006, "connection attempt timed out"),
      this._connectTimeout,
    );
    let token;
    try {
      token = typeof this._token === "function" ? this._token() : this._token;
    } catch (error) {
      token = Promise.reject(error);
    }
    Promise.resolve(token).then(
      (value) => {
        if (this._current === current) this._open(current, value);
      },
      (error) => {
        if (this._current !== current) return;
        this._log("warn", "wsroute: the token callback failed:", error);
        this._drop(current, 1006, "token callback failed");
      },
    );
  }

  _open(current, token) {
    const url = new URL(this._url.href);
    for (const [key, value] of Object.entries(this._params)) {
      if (value !== undefined && value !== null) url.searchParams.set(key, String(value));
    }
    if (token != null && token !== "") url.searchParams.set(this._tokenParam, String(token));
    // Last, so that the query keeps its order from attempt to attempt.
    const recover = this._positions === null ? null : this._positions.query();
    if (recover !== null) url.searchParams.set(RECOVER_PARAM, recover);
    let socket;
    try {
      socket = new this._WebSocket(url.href, this._protocols);
    } catch (error) {
      // A bad URL or subprotocol: every attempt would fail the same way.
      this._log("error", "wsroute: cannot create the WebSocket:", error);
      this._current = null;
      clearTimeout(current.timer);
      this._finish(1006, `cannot create the WebSocket: ${error && error.message}`, null);
      return;
    }
    current.socket = socket;
    // msgpack is decoded at once, and a Blob could only be read later; under JSON,
    // binary frames are dropped anyway.
    socket.binaryType = "arraybuffer";
    socket.addEventListener("open", () => {
      this._restore(current).catch((error) => this._log("error", "wsroute: restoring the session failed:", error));
    });
    socket.addEventListener("message", (event) => this._onMessage(current, event));
    socket.addEventListener("close", (event) => this._drop(current, event.code, event.reason ?? ""));
    socket.addEventListener("error", () => {
      // Once open, the close event that follows has the code. Before, it may never
      // come (Node 20's built-in WebSocket stays CONNECTING after a refused handshake).
      if (!current.open) this._drop(current, 1006, "");
    });
    if (typeof socket.on === "function") {
      // The `ws` package shows a refused handshake's HTTP status (browsers cannot).
      // With a listener, ws leaves the request to us: remember the status and abort.
      socket.on("unexpected-response", (_request, response) => {
        current.status = response.statusCode;
        abandon(socket);
      });
    }
  }

  /** The socket is open: replay, then turn `open` and send what waited for it. */
  async _restore(current) {
    if (this._current !== current) return;
    clearTimeout(current.timer);
    current.open = true;
    // The format is the one the server selected: with a codec offered, an older
    // server, or one that prefers another subprotocol, still gets JSON.
    this._subprotocol = current.socket.protocol || null;
    current.msgpack = this._msgpack !== null && this._subprotocol === MSGPACK;
    // Replay first, in the original order and one at a time, so that the server
    // rebuilds the session (topics joined by handlers) before anything else is sent.
    for (const entry of this._replays.slice()) {
      if (this._current !== current) return;
      if (!this._replays.includes(entry)) continue; // forgotten meanwhile
      try {
        await this._call(entry);
      } catch (error) {
        // Dropped or closed meanwhile: the next connection replays again.
        if (this._current !== current) return;
        this._replays = this._replays.filter((other) => other !== entry);
        this._reportReplayError(error, { type: entry.type, data: entry.data });
      }
    }
    if (this._current !== current) return;
    this._attempt = 0;
    this._everOpened = true;
    this._setState("open", {});
    this._resolveOpened();
    if (this._current !== current) return; // a state listener closed the client
    const waiting = this._waiting;
    this._waiting = [];
    for (const entry of waiting) {
      if (this._current !== current) {
        this._waiting.push(entry); // dropped while flushing: wait for the next open
      } else {
        this._transmit(entry);
      }
    }
  }

  /** Send a recorded request on the connection being restored, bypassing the wait for open. */
  _call(replay) {
    return new Promise((resolve, reject) => {
      const entry = {
        type: replay.type,
        data: replay.data,
        json: replay.json,
        plain: replay.plain,
        expectReply: true,
        replay: false,
        id: 0,
        timeout: this._requestTimeout,
        resolve,
        reject,
        timer: undefined,
        done: false,
      };
      entry.timer = startTimer(() => this._expire(entry), entry.timeout);
      this._transmit(entry);
    });
  }

  _reportReplayError(error, request) {
    if (this._replayErrorListeners.length === 0) {
      this._log("warn", `wsroute: replaying ${request.type} failed; it will not be replayed again:`, error);
      return;
    }
    for (const listener of this._replayErrorListeners.slice()) {
      callSafely(this, "an onReplayError listener", listener.fn, [error, request]);
    }
  }

  /**
   * The identity of a request for replay: its type and its data as sorted JSON.
   * With a codec, the data is its plain value (`toPlain`), with bytes as
   * `{"\u0000bytes": base64}`, so the same request is the same key in either format.
   */
  _replayKey(type, data, plain) {
    if (this._msgpack === null) return `${type}\u0000${canonicalJson(data ?? null)}`;
    if (plain === undefined) plain = toPlain(data ?? null, "", new Set());
    return `${type}\u0000${canonicalJson(plain, true)}`;
  }

  _remember(entry) {
    const key = this._replayKey(entry.type, entry.data, entry.plain);
    if (this._replays.some((other) => other.key === key)) return;
    this._replays.push({ type: entry.type, data: entry.data, json: entry.json, plain: entry.plain, key });
  }

  _onMessage(current, event) {
    if (this._current !== current) return;
    try {
      if (current.msgpack) this._handleBinaryFrame(event.data);
      else this._handleFrame(event.data);
    } catch (error) {
      this._log("error", "wsroute: a frame could not be handled:", error);
    }
  }

  _handleFrame(raw) {
    if (typeof raw !== "string") {
      this._log("warn", "wsroute: dropped a binary frame (the protocol is JSON text frames)");
      return;
    }
    let message;
    try {
      message = JSON.parse(raw);
    } catch (_) {
      this._log("warn", `wsroute: dropped a frame that is not JSON: ${preview(raw)}`);
      return;
    }
    if (message === null || typeof message !== "object" || Array.isArray(message)) {
      this._log("warn", `wsroute: dropped a frame that is not a JSON object: ${preview(raw)}`);
      return;
    }
    if ("ok" in message) this._onReply(message, raw);
    else this._onEvent(message, raw);
  }

  /** A frame on a msgpack connection: one msgpack map in one binary frame. */
  _handleBinaryFrame(raw) {
    if (typeof raw === "string") {
      this._log("warn", `wsroute: dropped a text frame (this connection speaks msgpack): ${preview(raw)}`);
      return;
    }
    const bytes = bytesOf(raw);
    if (bytes === null) {
      this._log("warn", "wsroute: dropped a binary frame that is neither an ArrayBuffer nor a Uint8Array");
      return;
    }
    let message;
    try {
      message = this._msgpack.decode(bytes);
    } catch (error) {
      const why = error && error.message ? ` (${error.message})` : "";
      this._log("warn", `wsroute: dropped a frame that is not msgpack${why}: ${hexPreview(bytes)}`);
      return;
    }
    if (message === null || typeof message !== "object" || Array.isArray(message) || isBytes(message)) {
      this._log("warn", `wsroute: dropped a frame that is not a msgpack map: ${show(message)}`);
      return;
    }
    // The decoded message stands in for the text in warnings (show() quotes either).
    if ("ok" in message) this._onReply(message, message);
    else this._onEvent(message, message);
  }

  _onReply(message, raw) {
    const id = message.id;
    if (id === undefined || id === null) {
      // An answer to an emit (sent without id), or to a frame the server could not
      // read (type "error"). A success needs nothing; a failure has nobody to tell.
      if (message.ok !== true) {
        const error = message.error ?? {};
        this._log("warn", `wsroute: error reply without id (type ${message.type}): ${error.code}: ${error.message}`);
      }
      return;
    }
    const entry = this._pending.get(id);
    if (entry === undefined) {
      if (this._late.delete(id)) return; // its request timed out: expected, not news
      this._log("warn", `wsroute: dropped a reply with unknown id: ${show(raw)}`);
      return;
    }
    if (message.ok === true) {
      if (entry.replay) this._remember(entry);
      this._settle(entry, true, message.data === undefined ? null : message.data);
      return;
    }
    const error = message.error !== null && typeof message.error === "object" ? message.error : {};
    this._settle(
      entry,
      false,
      new HandlerError(
        typeof error.code === "string" ? error.code : "invalid_reply",
        typeof error.message === "string" ? error.message : "the server sent a malformed error reply",
        error.details,
        entry.type,
      ),
    );
  }

  _onEvent(message, raw) {
    const type = message.type;
    if (typeof type !== "string") {
      this._log("warn", `wsroute: dropped an event without a type: ${show(raw)}`);
      return;
    }
    if (this._positions !== null) this._track(type, message);
    const own = this._listeners.get(type);
    const every = type === "*" ? undefined : this._listeners.get("*");
    if (own === undefined && every === undefined) return;
    const listeners = [...(own ?? []), ...(every ?? [])]; // a snapshot: listeners may unsubscribe
    const data = message.data === undefined ? null : message.data;
    for (const listener of listeners) {
      if (listener.topic !== undefined && listener.topic !== message.topic) continue;
      callSafely(this, `a listener for "${type}"`, listener.fn, [data, message]);
    }
  }

  /**
   * Move the topic's position to the event's, before any listener runs (one that
   * saves `positions` sees it): an event kept in history carries its `offset` and
   * `epoch`; a `wsroute.recovery` event carries the position to go on from in its
   * data, or nulls when the old one stands.
   */
  _track(type, message) {
    const topic = message.topic;
    if (typeof topic !== "string" || topic === "") return;
    const source = type === RECOVERY_TYPE ? message.data : message;
    if (source === null || typeof source !== "object") return;
    const position = positionOf(source.offset, source.epoch);
    if (position !== null) this._positions.set(topic, position);
  }

  /**
   * The connection (or attempt) `current` is over: fail what waited for its replies,
   * then reconnect or close according to the close code or HTTP status.
   */
  _drop(current, code, reason) {
    if (this._current !== current) return;
    this._current = null;
    clearTimeout(current.timer);
    if (current.socket !== null && current.socket.readyState <= OPEN) abandon(current.socket);
    this._late.clear(); // a new connection never answers the old one's ids
    const pending = [...this._pending.values()];
    this._pending.clear();
    for (const entry of pending) this._settle(entry, false, new DisconnectedError(code, reason));
    if (this._state === "closed") return; // a rejection handler closed the client
    const options = this._reconnect;
    const status = current.status;
    if (status !== null && !reason) reason = `handshake refused with HTTP ${status}`;
    const retry =
      options !== null &&
      (status !== null ? options.retryStatuses.includes(status) : options.retryCodes.includes(code));
    if (!retry || this._attempt >= options.maxAttempts) {
      this._finish(code, reason, status);
      return;
    }
    this._attempt += 1;
    const delay = backoffDelay(this._attempt, options);
    this._setState("reconnecting", { code, reason, status, attempt: this._attempt, delay });
    if (this._state === "closed") return; // a state listener closed the client
    this._retryTimer = setTimeout(() => this._connect(), delay);
  }

  /** Closed for good: fail everything still waiting and stop every timer. */
  _finish(code, reason, status) {
    clearTimeout(this._retryTimer);
    this._retryTimer = undefined;
    this._closeCode = code;
    this._closeReason = reason;
    this._setState("closed", { code, reason, status });
    const entries = [...this._pending.values(), ...this._waiting];
    this._pending.clear();
    this._waiting = [];
    this._late.clear();
    for (const entry of entries) this._settle(entry, false, new ClosedError(code, reason));
    this._rejectOpened(new ClosedError(code, reason));
  }

  /** Set the state now; deliver changes in order even when a listener changes it again. */
  _setState(state, info) {
    this._state = state;
    this._stateQueue.push(
      Object.freeze({
        state,
        code: info.code ?? null,
        reason: info.reason ?? "",
        status: info.status ?? null,
        attempt: info.attempt ?? 0,
        delay: info.delay ?? null,
      }),
    );
    if (this._delivering) return;
    this._delivering = true;
    try {
      while (this._stateQueue.length > 0) {
        const change = this._stateQueue.shift();
        for (const listener of this._stateListeners.slice()) {
          callSafely(this, "an onState listener", listener.fn, [change]);
        }
      }
    } finally {
      this._delivering = false;
    }
  }
}

/** Drop a socket we no longer want, at once and without a close handshake if possible. */
function abandon(socket) {
  try {
    if (typeof socket.terminate === "function") socket.terminate(); // ws
    else socket.close();
  } catch (_) {
    // Already closed.
  }
}

/**
 * Close `socket` with a handshake; resolve when it is closed, or after CLOSE_WAIT_MS
 * (then drop it), so that `await client.close()` never hangs on a silent server.
 */
function closeSocket(socket, code, reason) {
  if (socket.readyState > OPEN) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      abandon(socket);
      resolve();
    }, CLOSE_WAIT_MS);
    socket.addEventListener("close", () => {
      clearTimeout(timer);
      resolve();
    });
    try {
      if (socket.readyState === CONNECTING) abandon(socket);
      else socket.close(code, reason);
    } catch (_) {
      abandon(socket);
    }
  });
}
