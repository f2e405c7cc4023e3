// The conversation being shown: its messages, and sending, stopping, regenerating and
// editing them against the gateway.
//
// The console names each conversation (a uuid made here, sent as X-Enclave-Conversation on
// every call); the gateway stores each exchange (the user's message and the answer, with
// the answer's meta). For a plain model the whole history goes in `messages`; for an
// assistant only the new message does, as the server keeps the history itself
// (src/enclave/assistants/service.py, Assistants._history: stored turns are used when the
// request holds no assistant turn). Regenerate and edit first drop the stored messages from
// the one being replaced on (DELETE /api/conversations/{id}/messages?from_index=N), then send
// again, so the server's history and the page stay the same.
//
// Which messages the server holds (and so their index there): an exchange is stored whole
// when its answer finished; a plain model's stream that was stopped or failed part-way is
// stored too once an event of it arrived (with meta.incomplete); an assistant's is not,
// and neither is a call refused or left before its first event.
import { useRef, useState } from "../vendor/preact.js";
import { api } from "../core/api.js";
import { contentOf, imagesOf, textOf } from "./attach.js";
import { isAssistant } from "./composer.js";
import { LiveText } from "./thread.js";
import { stream } from "./stream.js";

let keys = 0;
const key = () => `m${++keys}`;

export function newId() {
  if (crypto.randomUUID) return crypto.randomUUID(); // secure contexts only (https, localhost)
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  bytes[6] = (bytes[6] & 0x0f) | 0x40;
  bytes[8] = (bytes[8] & 0x3f) | 0x80;
  const hex = [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

export function fromServer(row) {
  return {
    key: key(),
    role: row.role,
    text: row.content,
    content: row.content,
    meta: row.meta || null,
    citations: row.citations || [],
    index: row.index,
    stored: true,
  };
}

export function userMessage(content) {
  return { key: key(), role: "user", content, text: textOf(content), images: imagesOf(content), stored: false, index: null };
}

// Index of each stored message on the server; objects replaced only where it changed.
function renumber(messages) {
  let n = 0;
  return messages.map((m) => {
    const index = m.stored ? n++ : null;
    return index === m.index ? m : { ...m, index };
  });
}

function wire(messages, assistant, user) {
  if (assistant) return [{ role: "user", content: user.content }];
  const history = messages
    .filter((m) => !m.failed && (m.role === "user" || m.text))
    .map((m) => ({ role: m.role, content: m.role === "user" ? m.content : m.text }));
  return [...history, { role: "user", content: user.content }];
}

export function useConversation({ models, onStored, onFailed }) {
  const [state, setState] = useState({ id: newId(), messages: [], title: "", loaded: 0, error: null, loading: false });
  const [busy, setBusy] = useState(false);
  const ref = useRef(state);
  ref.current = state;
  const abort = useRef(null);

  const put = (change) => {
    const next = { ...ref.current, ...change };
    ref.current = next;
    setState(next);
  };
  const replace = (keyOf, change) => put({ messages: ref.current.messages.map((m) => (m.key === keyOf ? { ...m, ...change } : m)) });

  async function exchange(history, user, model) {
    const assistant = isAssistant(models().find((m) => m.id === model) || { id: model });
    const live = new LiveText();
    const answer = { key: key(), role: "assistant", streaming: true, live, text: "", stored: false, index: null };
    const kept = history.filter((m) => !m.failed);
    put({ messages: [...kept, user, answer], error: null, title: ref.current.title || user.text.slice(0, 80) });
    const controller = new AbortController();
    abort.current = controller;
    setBusy(true);
    let usage = null;
    let citations = [];
    let servedBy = model;
    let head = {};
    let streamed = false; // an event arrived: a plain model's exchange is then stored
    const finish = (change, stored) => {
      live.cancel();
      const meta = {
        model: servedBy,
        upstream: head.upstream || null,
        tokens_in: usage?.prompt_tokens ?? null,
        tokens_out: usage?.completion_tokens ?? null,
        ...change.meta,
      };
      const messages = ref.current.messages.map((m) => {
        if (m.key === user.key) return { ...m, stored, failed: change.failed };
        if (m.key === answer.key) return { ...m, streaming: false, live: null, text: live.text, citations, queueMs: head.queueMs, ...change, meta, stored };
        return m;
      });
      put({ messages: renumber(messages) });
    };
    try {
      const done = await stream(
        { model, messages: wire(kept, assistant, user) },
        {
          conversation: ref.current.id,
          signal: controller.signal,
          onStart: (given) => (head = given),
          onDelta: (delta) => live.push(delta),
          onChunk: (chunk) => {
            streamed = true;
            if (chunk.usage) usage = chunk.usage;
            if (chunk.citations) citations = chunk.citations;
            if (chunk.model) servedBy = chunk.model;
          },
        },
      );
      finish({ meta: { ttft_ms: done.ttftMs, latency_ms: done.latencyMs } }, true);
      onStored();
    } catch (error) {
      const stopped = error.name === "AbortError";
      const partial = live.text.length > 0;
      const stored = !assistant && streamed;
      finish({ stopped, error: stopped ? null : error.message, failed: !stopped && !partial, meta: {} }, stored);
      if (stored) onStored();
      if (!stopped) onFailed(user);
    } finally {
      abort.current = null;
      setBusy(false);
    }
  }

  async function truncate(message) {
    if (message.index == null) return;
    try {
      await api(`/api/conversations/${encodeURIComponent(ref.current.id)}/messages`, {
        method: "DELETE",
        query: { from_index: message.index },
      });
    } catch (error) {
      if (error.status !== 404) throw error; // 404: nothing stored yet
    }
  }

  return {
    state,
    busy,
    send(content, model) {
      return exchange(ref.current.messages, userMessage(content), model);
    },
    stop() {
      abort.current?.abort();
    },
    async regenerate(model) {
      const messages = ref.current.messages;
      const at = messages.length - 2;
      const user = messages[at];
      if (!user || user.role !== "user") return;
      await truncate(user);
      await exchange(messages.slice(0, at), userMessage(user.content), model);
    },
    async edit(message, text, model) {
      const messages = ref.current.messages;
      const at = messages.findIndex((m) => m.key === message.key);
      if (at < 0) return;
      const images = imagesOf(message.content).map((url) => ({ kind: "image", url }));
      await truncate(message);
      await exchange(messages.slice(0, at), userMessage(contentOf(text, images)), model);
    },
    reset() {
      abort.current?.abort();
      put({ id: newId(), messages: [], title: "", loaded: 0, error: null, loading: false });
    },
    async open(id) {
      abort.current?.abort();
      const started = performance.now();
      put({ id, messages: [], title: "", loaded: 0, error: null, loading: true });
      try {
        const detail = await api(`/api/conversations/${encodeURIComponent(id)}`);
        if (ref.current.id !== id) return null;
        const messages = detail.data.map(fromServer);
        put({ messages, title: detail.title, loaded: messages.length, loading: false });
        return { detail, started, fetchedMs: performance.now() - started };
      } catch (error) {
        if (ref.current.id === id) put({ loading: false, error });
        return null;
      }
    },
    current: () => ref.current,
  };
}
