// Following one run's events as they happen, over the tasks WebSocket.
//
// A browser cannot put a token on a WebSocket, and a long-lived token in a URL ends up in
// logs: the page asks POST /api/tasks/ws/ticket for a one-use ticket (good for a few
// seconds) and opens /api/tasks/ws?ticket=… on its own origin. It subscribes with `after`
// = the last event id it has; when the socket drops, a new ticket and a new socket resume
// after that id, so nothing is lost and nothing shown twice. The stream of a run ends with
// its terminal status event. Should the socket never open (a proxy that does not pass
// WebSockets), the page reads GET /api/runs/{id}/events?after= instead, once a second.
import { api } from "../core/api.js";

export const TERMINAL = new Set(["succeeded", "failed", "cancelled"]);
const FIRST_DELAY_MS = 500;
const MAX_DELAY_MS = 5000;
const FAILED_OPENS = 3; // sockets that never opened in a row before polling instead
const POLL_MS = 1000;
const POLL_LIMIT = 500;

export const isEnd = (event) => event.type === "status" && TERMINAL.has(event.status);

function socketUrl(ticket) {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${location.host}/api/tasks/ws?ticket=${encodeURIComponent(ticket)}`;
}

// follow(run, {after, onEvent(event), onState(state, message?)}) -> stop().
// States: connecting, live, reconnecting, polling, error (a message from the server),
// done (the terminal status arrived).
export function follow(run, { after = 0, onEvent, onState = () => {} }) {
  let last = after;
  let socket = null;
  let stopped = false;
  let delay = FIRST_DELAY_MS;
  let failedOpens = 0;
  let timer = null;

  const stop = () => {
    stopped = true;
    clearTimeout(timer);
    if (socket) {
      socket.onclose = null;
      socket.close();
      socket = null;
    }
  };
  const deliver = (event) => {
    if (event.id <= last) return; // a repeat after a resume
    last = event.id;
    onEvent(event);
    if (isEnd(event)) {
      stop();
      onState("done");
    }
  };
  const later = (next, message) => {
    if (stopped) return;
    onState("reconnecting", message);
    timer = setTimeout(next, delay);
    delay = Math.min(delay * 1.5, MAX_DELAY_MS);
  };

  const poll = async () => {
    if (stopped) return;
    onState("polling");
    try {
      const found = await api(`/api/runs/${encodeURIComponent(run)}/events`, { query: { after: last, limit: POLL_LIMIT } });
      found.data.filter((event) => typeof event.id === "number").forEach(deliver);
      if (!stopped) timer = setTimeout(poll, found.data.length >= POLL_LIMIT ? 0 : POLL_MS);
    } catch (error) {
      later(poll, error.message);
    }
  };

  const open = async () => {
    if (stopped) return;
    if (failedOpens >= FAILED_OPENS) return poll();
    onState("connecting");
    let ticket;
    try {
      ticket = (await api("/api/tasks/ws/ticket", { method: "POST" })).ticket;
    } catch (error) {
      failedOpens += 1;
      return later(open, error.message);
    }
    if (stopped) return;
    let opened = false;
    socket = new WebSocket(socketUrl(ticket));
    socket.onopen = () => {
      opened = true;
      failedOpens = 0;
      delay = FIRST_DELAY_MS;
      socket.send(JSON.stringify({ type: "subscribe", run, after: last }));
      onState("live");
    };
    socket.onmessage = (message) => {
      let event;
      try {
        event = JSON.parse(message.data);
      } catch {
        return;
      }
      if (event.run === run && typeof event.id === "number") deliver(event);
      else if (event.type === "error") onState("error", event.message); // about a message of ours
    };
    socket.onclose = () => {
      socket = null;
      if (!opened) failedOpens += 1;
      later(open);
    };
  };

  open();
  return stop;
}
