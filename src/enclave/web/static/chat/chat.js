// The chat page: the conversation list on the left (a drawer on phones), the thread in the
// middle, the composer at the bottom, a citation's source in a panel on the right.
//
// Shortcuts (also in the ? dialog): Enter sends, Shift+Enter is a new line, Escape stops
// an answer (or closes a panel), Ctrl/Cmd+K or / focuses the message box, Ctrl/Cmd+Shift+O
// starts a new chat, ArrowUp in an empty box edits the last message, ? shows the help.
import { html, useEffect, useRef, useState } from "../vendor/preact.js";
import { api } from "../core/api.js";
import { lang, t } from "../core/i18n.js";
import { go } from "../core/shell.js";
import { Dialog, Loading, useAsync } from "../core/ui.js";
import { contentOf, textOf } from "./attach.js";
import { Composer, ModelPicker, savedModel } from "./composer.js";
import { useConversation } from "./conversation.js";
import { Icon } from "./icons.js";
import { Sidebar } from "./sidebar.js";
import { SourcePanel } from "./sources.js";
import "./strings.js";
import { Thread } from "./thread.js";

let restoredIds = 0;
const restored = (url, n) => ({
  id: `r${++restoredIds}`,
  kind: "image",
  name: `image-${n + 1}`,
  url,
  bytes: Math.round(((url.length - url.indexOf(",") - 1) * 3) / 4),
});

const EAGER_LAST = 8; // messages at the bottom of an opened conversation rendered at once

function typing(target) {
  return target.closest?.("input, textarea, select, [contenteditable='true']");
}

function Help({ open, onClose }) {
  const rows = [
    ["Enter", "chat.key.send"],
    ["Shift + Enter", "chat.key.newline"],
    ["Esc", "chat.key.stop"],
    ["Ctrl/⌘ + K, /", "chat.key.focus"],
    ["Ctrl/⌘ + Shift + O", "chat.key.new"],
    ["↑", "chat.key.editlast"],
    ["?", "chat.key.help"],
  ];
  return html`<${Dialog} open=${open} onClose=${onClose} title=${t("chat.help")}>
    <table class="keys" data-testid="help">
      ${rows.map(([keysText, what]) => html`<tr><td><kbd>${keysText}</kbd></td><td>${t(what)}</td></tr>`)}
    </table>
  <//>`;
}

function Empty() {
  return html`<div class="thread-empty">
    <h1>${t("chat.empty.title")}</h1>
    <p class="muted">${t("chat.empty.hint")}</p>
  </div>`;
}

// Time from asking for a conversation to its thread painted, kept for the tests and bench.
function reportPaint(started, fetchedMs, count) {
  requestAnimationFrame(() =>
    setTimeout(() => {
      const timing = { messages: count, fetchMs: fetchedMs, paintMs: performance.now() - started };
      window.enclaveChatTiming = timing;
      document.querySelector(".thread")?.setAttribute("data-open-ms", timing.paintMs.toFixed(1));
    }, 0),
  );
}

export function ChatPage({ route }) {
  const [models] = useAsync(() => api("/v1/models").then((answer) => answer.data), []);
  const modelsRef = useRef([]);
  modelsRef.current = models || [];
  const [model, setModel] = useState(null);
  const [text, setText] = useState("");
  const [attachments, setAttachments] = useState([]);
  const [refreshKey, setRefreshKey] = useState(0);
  const [editing, setEditing] = useState(null);
  const [source, setSource] = useState(null);
  const [drawer, setDrawer] = useState(false);
  const [help, setHelp] = useState(false);
  const input = useRef(null);
  const chat = useConversation({
    models: () => modelsRef.current,
    onStored: () => {
      setRefreshKey((n) => n + 1);
      const { id } = chat.current();
      if (route[1] !== id) go("chat", id);
    },
    onFailed: (user) => {
      // nothing typed is lost: the text and images of a message that failed go back
      setText((now) => now || user.text);
      setAttachments((now) => (now.length ? now : user.images.map(restored)));
    },
  });
  const { state, busy } = chat;
  const live = useRef({});
  live.current = { chat, busy, source, drawer, state };

  useEffect(() => {
    if (!models) return;
    const ids = models.map((m) => m.id);
    const wanted = [model, savedModel()].find((id) => id && ids.includes(id));
    setModel(wanted || models.find((m) => !m.id.startsWith("assistant/"))?.id || ids[0] || null);
  }, [models]);

  // The route names the conversation: #/chat/<id>; #/chat alone is a new one.
  const wantedId = route[0] === "chat" ? route[1] : undefined;
  useEffect(() => {
    const now = chat.current();
    if (wantedId && wantedId !== now.id) {
      setEditing(null);
      setSource(null);
      chat.open(wantedId).then((opened) => {
        if (!opened) return;
        const ids = modelsRef.current.map((m) => m.id);
        if (ids.includes(opened.detail.model)) setModel(opened.detail.model);
        reportPaint(opened.started, opened.fetchedMs, opened.detail.data.length);
      });
    } else if (!wantedId && (now.messages.length || now.loading || now.error)) {
      chat.reset();
    }
  }, [wantedId]);

  // Keyboard-first: the message box has the focus when the page opens, except on touch
  // screens, where focusing would pop the keyboard over the page.
  useEffect(() => {
    if (window.matchMedia("(pointer: fine)").matches) input.current?.focus();
  }, []);

  useEffect(() => {
    const keys = (event) => {
      const { chat: c, busy: b, source: s, drawer: d } = live.current;
      const mod = event.ctrlKey || event.metaKey;
      if (event.key === "Escape") {
        if (b) c.stop();
        else if (s) setSource(null);
        else if (d) setDrawer(false);
        else return;
        event.preventDefault();
      } else if (mod && !event.shiftKey && event.key.toLowerCase() === "k") {
        event.preventDefault();
        input.current?.focus();
      } else if (mod && event.shiftKey && event.key.toLowerCase() === "o") {
        event.preventDefault();
        newChat();
      } else if (!mod && !event.altKey && !typing(event.target) && !document.querySelector("dialog[open]")) {
        if (event.key === "/") {
          event.preventDefault();
          input.current?.focus();
        } else if (event.key === "?") {
          event.preventDefault();
          setHelp(true);
        }
      }
    };
    window.addEventListener("keydown", keys);
    return () => window.removeEventListener("keydown", keys);
  }, []);

  function newChat() {
    setEditing(null);
    setSource(null);
    setDrawer(false);
    chat.reset();
    go("chat");
    input.current?.focus();
  }

  const canSend = Boolean(model) && (text.trim() !== "" || attachments.length > 0) && !state.loading;
  const send = () => {
    const content = contentOf(text.trim(), attachments);
    setText("");
    setAttachments([]);
    chat.send(content, model);
  };
  const actions = useRef({});
  Object.assign(actions.current, {
    editing: setEditing,
    edit: (message, newText) => {
      setEditing(null);
      chat.edit(message, newText, model);
    },
    regenerate: () => chat.regenerate(model),
    source: (message, citation) => {
      const messages = live.current.state.messages;
      const at = messages.findIndex((m) => m.key === message.key);
      const question = at > 0 ? textOf(messages[at - 1].content) : "";
      setSource({ citation, question });
    },
  });
  const editLast = () => {
    const last = [...state.messages].reverse().find((m) => m.role === "user");
    if (!last || busy) return false;
    setEditing(last.key);
    return true;
  };

  const classes = ["chat", drawer ? "drawer-open" : "", source ? "panel-open" : ""].join(" ");
  return html`<main class=${classes}>
    <aside class="chat-side" id="chat-side" aria-label=${t("chat.conversations")}>
      <${Sidebar}
        current=${state.id}
        refreshKey=${refreshKey}
        onOpen=${(id) => {
          setDrawer(false);
          go("chat", id);
        }}
        onNew=${newChat}
      />
    </aside>
    <div class="chat-scrim" onClick=${() => setDrawer(false)}></div>
    <section class="chat-main">
      <header class="chat-head">
        <button
          class="icon side-toggle"
          aria-controls="chat-side"
          aria-expanded=${drawer}
          aria-label=${t("chat.conversations")}
          data-testid="drawer-toggle"
          onClick=${() => setDrawer(!drawer)}
        >
          <${Icon} name="menu" />
        </button>
        ${models ? html`<${ModelPicker} models=${models} value=${model} onChange=${setModel} />` : html`<span class="muted small">${t("app.loading")}</span>`}
        <span class="chat-title" title=${state.title}>${state.title}</span>
        <button class="icon" data-testid="help-button" title=${t("chat.help.button")} aria-label=${t("chat.help.button")} onClick=${() => setHelp(true)}>?</button>
      </header>
      ${state.loading || state.error
        ? html`<div class="thread">
            ${state.error ? html`<p class="notice error" role="alert">${t("chat.notfound", { message: state.error.message })}</p>` : html`<${Loading} />`}
          </div>`
        : html`<${Thread}
            messages=${state.messages}
            busy=${busy}
            editing=${editing}
            eagerFrom=${Math.max(0, state.loaded - EAGER_LAST)}
            lang=${lang}
            actions=${actions.current}
            empty=${html`<${Empty} />`}
          />`}
      <${Composer}
        text=${text}
        setText=${setText}
        attachments=${attachments}
        setAttachments=${setAttachments}
        busy=${busy}
        canSend=${canSend}
        onSend=${send}
        onStop=${chat.stop}
        onEditLast=${editLast}
        inputRef=${input}
      />
    </section>
    <${SourcePanel} open=${source} onClose=${() => setSource(null)} />
    <${Help} open=${help} onClose=${() => setHelp(false)} />
  </main>`;
}
