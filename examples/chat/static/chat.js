// The chat example's page: the official JavaScript client (served by the app at
// /wsroute.js) against examples/chat/app.py, with no build step.
import { connect, HandlerError } from "/wsroute.js";

const $ = (id) => document.getElementById(id);
let client = null;

function show(text, kind = "") {
  const item = document.createElement("li");
  item.textContent = text;
  if (kind) item.className = kind;
  $("log").append(item);
  $("log").scrollTop = $("log").scrollHeight;
}

function showRoster(roster) {
  $("roster").textContent = `In ${roster.room}: ${roster.nicks.join(", ")}`;
}

function start(nick) {
  // The app reads the user from ?user= (a stand-in for real authentication). "/" is
  // the page's own server: ws:// for an http:// page, wss:// for an https:// one.
  client = connect("/", { params: { user: nick } });
  client.onState(({ state, code, reason }) => {
    $("state").dataset.state = state;
    $("state").textContent = code ? `${state} (${code}${reason ? " " + reason : ""})` : state;
    const ready = state === "open";
    $("text").disabled = $("say").disabled = !ready;
  });
  client.on("say", (line) => show(`${line.nick}: ${line.text}`));
  client.on("joined", (who) => show(`${who.nick} joined ${who.room}`, "notice"));
  client.on("left", (who) => show(`${who.nick} left ${who.room}`, "notice"));
  client.on("whisper", (msg) => show(`${msg.from} whispers: ${msg.text}`, "notice"));
  client.on("kicked", (order) => show(`kicked by ${order.by}: ${order.reason}`, "error"));
  client.onReplayError((error, request) => show(`could not rejoin: ${error.message}`, "error"));
}

$("join-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const nick = $("nick").value.trim();
  const room = $("room").value.trim();
  if (!client) start(nick);
  try {
    // One room at a time: after a reconnect, rejoin only the room joined last.
    client.forgetReplay("join");
    showRoster(await client.request("join", { room, nick }, { replay: true }));
    $("text").focus();
  } catch (error) {
    show(error instanceof HandlerError ? `${error.code}: ${error.message}` : String(error), "error");
  }
});

$("say-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const text = $("text").value;
  if (!text) return;
  $("text").value = "";
  try {
    await client.request("say", { text });
  } catch (error) {
    show(error instanceof HandlerError ? `${error.code}: ${error.message}` : String(error), "error");
  }
});
