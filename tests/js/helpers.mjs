// Shared pieces of the Node tests: a real `wsroute run` server process, a WebSocket
// class that records what the client does, and bounded waits.

import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

import { WebSocket } from "ws";

export const HERE = dirname(fileURLToPath(import.meta.url));
export const REPO = join(HERE, "..", "..");
/** The Python with wsroute installed: tests/test_js_client.py passes its own. */
export const PYTHON =
  process.env.WSROUTE_PYTHON ??
  (existsSync(join(REPO, ".venv", "bin", "python")) ? join(REPO, ".venv", "bin", "python") : "python3");
/** Upper bound of any single wait in these tests. */
export const WAIT_MS = 10000;

/** Reject with a message naming `what` if `promise` takes longer than `ms`. */
export function within(promise, what, ms = WAIT_MS) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

export function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Poll `predicate` until it is true, within `ms`. */
export async function until(predicate, what, ms = WAIT_MS) {
  const deadline = Date.now() + ms;
  while (!(await predicate())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(10);
  }
}

/** This process's environment without WSROUTE_* options, which would change the server. */
function childEnv() {
  return Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.startsWith("WSROUTE_")));
}

/**
 * A `wsroute run app:app --app-dir tests/js` process (or another app, another
 * directory); `start()` resolves once it listens.
 */
export class Server {
  constructor(port, target = "app:app", appDir = HERE) {
    this.port = port;
    this.target = target;
    this.appDir = appDir;
    this.output = [];
    this.process = null;
  }

  get url() {
    return `ws://127.0.0.1:${this.port}/`;
  }

  static async start({ target = "app:app", appDir = HERE } = {}) {
    const server = new Server(0, target, appDir);
    await server._spawn();
    return server;
  }

  async _spawn() {
    const child = spawn(
      PYTHON,
      ["-m", "wsroute", "run", this.target, "--app-dir", this.appDir, "--port", String(this.port), "--log-level", "info"],
      {
        cwd: REPO,
        env: { ...childEnv(), PYTHONUNBUFFERED: "1" },
        stdio: ["ignore", "ignore", "pipe"],
      },
    );
    this.process = child;
    const exited = new Promise((resolve) => child.once("exit", (code, signal) => resolve({ code, signal })));
    this.exited = exited;
    let buffer = "";
    const listening = new Promise((resolve, reject) => {
      child.stderr.setEncoding("utf8");
      child.stderr.on("data", (chunk) => {
        buffer += chunk;
        const lines = buffer.split("\n");
        buffer = lines.pop();
        for (const line of lines) {
          this.output.push(line);
          const match = /listening on ws:\/\/127\.0\.0\.1:(\d+) /.exec(line);
          if (match) resolve(Number(match[1]));
        }
      });
      child.once("error", reject);
      exited.then(({ code, signal }) =>
        reject(new Error(`wsroute run exited (${code ?? signal}) before listening:\n${this.output.join("\n")}`)),
      );
    });
    this.port = await within(listening, "the wsroute server to listen");
  }

  /** SIGKILL: the connections drop without a close frame (1006), as in a crash. */
  async kill() {
    if (this.process === null) return;
    const child = this.process;
    this.process = null;
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
    await within(this.exited, "the wsroute server to exit");
  }

  /** Start again on the same port, retrying while the old listener lets go of it. */
  async restart() {
    const deadline = Date.now() + WAIT_MS;
    for (;;) {
      try {
        await this._spawn();
        return;
      } catch (error) {
        if (Date.now() > deadline) throw error;
        await sleep(50);
      }
    }
  }
}

/**
 * A `ws` WebSocket class that records every socket the client creates and every frame
 * it sends, with the client's state at that moment.
 */
export function spyWebSocket(getClient = () => null) {
  const spy = { urls: [], sent: [], sockets: [] };
  spy.WebSocket = class SpyWebSocket extends WebSocket {
    constructor(url, protocols) {
      super(url, protocols);
      spy.urls.push(url);
      spy.sockets.push(this);
    }

    send(data, ...rest) {
      const client = getClient();
      spy.sent.push({ frame: JSON.parse(data), state: client === null ? null : client.state });
      return super.send(data, ...rest);
    }
  };
  return spy;
}

/** A logger that keeps what it is told. */
export function recordingLogger() {
  const logger = {
    warnings: [],
    errors: [],
    warn: (...args) => logger.warnings.push(args.map(String).join(" ")),
    error: (...args) => logger.errors.push(args.map(String).join(" ")),
  };
  return logger;
}

/** Every state change of `client`, and a way to wait for the next one of a kind. */
export function recordStates(client) {
  const changes = [];
  const waiters = [];
  client.onState((change) => {
    changes.push(change);
    for (const waiter of waiters.slice()) {
      if (change.state === waiter.state && changes.length > waiter.from) {
        waiters.splice(waiters.indexOf(waiter), 1);
        waiter.resolve(change);
      }
    }
  });
  return {
    changes,
    get names() {
      return changes.map((change) => change.state);
    },
    /** The first change to `state` from now on (or from change number `from`). */
    next(state, from = changes.length) {
      const found = changes.slice(from).find((change) => change.state === state);
      if (found !== undefined) return Promise.resolve(found);
      return within(new Promise((resolve) => waiters.push({ state, from, resolve })), `state ${state}`);
    },
  };
}

/** The next event of `type` (and `topic`), within WAIT_MS. */
export function nextEvent(client, type, options = {}) {
  let off;
  const received = new Promise((resolve) => {
    off = client.on(type, (data, event) => resolve(event), options);
  });
  return within(received, `a ${type} event`).finally(() => off());
}
