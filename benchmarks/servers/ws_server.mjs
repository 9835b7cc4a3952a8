// Reference: Node.js with the npm `ws` server speaking the benchmark protocol.
//
//   node ws_server.mjs PORT
//
// `ws`'s defaults (no heartbeat, no compression, automatic pong, client tracking),
// without its optional native add-ons (bufferutil, utf-8-validate); JSON.parse and
// JSON.stringify. A `blast` is serialised and encoded once, then sent to every open
// connection in turn. `ws` answers a client's close frame and then ends the TCP
// connection itself. The `ws` package is the load generator's (benchmarks/node_modules).

import { WebSocket, WebSocketServer } from "ws";

const port = Number(process.argv[2]);
const TEXT = { binary: false };
const wss = new WebSocketServer({ host: "127.0.0.1", port });

wss.on("connection", (ws) => {
  ws.on("message", (raw) => {
    const msg = JSON.parse(raw.toString());
    const data = msg.data === undefined ? null : msg.data;
    if (msg.type === "blast") {
      const event = Buffer.from(JSON.stringify({ type: "blast", topic: "all", data }));
      for (const peer of wss.clients) {
        if (peer.readyState === WebSocket.OPEN) peer.send(event, TEXT);
      }
      if (msg.id === undefined || msg.id === null) return;
    }
    const reply = { type: msg.type, id: msg.id, ok: true, data };
    if (reply.id === undefined || reply.id === null) delete reply.id;
    ws.send(JSON.stringify(reply));
  });
  ws.on("error", () => {}); // a peer that vanished; `ws` closes the socket itself
});
