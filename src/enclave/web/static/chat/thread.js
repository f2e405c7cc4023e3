// The thread: the messages of one conversation.
//
// Built to stay fast with 1,000 messages: each message is skipped by the browser's layout
// while off screen (CSS content-visibility: auto, chat.css), a finished message renders its
// Markdown only once it comes near the screen (an IntersectionObserver; until then its text
// is shown plain, which sizes it about right) and only once (memoized), a message re-renders
// only when it changes (shouldComponentUpdate), and the streaming message writes its own
// element at most once per animation frame without going through the component tree.
import { Component, html, useEffect, useLayoutEffect, useRef, useState } from "../vendor/preact.js";
import { number, t } from "../core/i18n.js";
import { copyText, formatMs } from "../core/ui.js";
import { Icon } from "./icons.js";
import { hasMath, mathGeneration, memoized, onMath, renderMarkdown } from "./markdown.js";

// The text of a message that is streaming: deltas are added as they come and the
// listeners (its body element) are told at most once per animation frame.
export class LiveText {
  constructor() {
    this.text = "";
    this.listeners = new Set();
    this.frame = 0;
  }
  push(delta) {
    this.text += delta;
    this.frame ||= requestAnimationFrame(() => {
      this.frame = 0;
      this.listeners.forEach((callback) => callback(this.text));
    });
  }
  listen(callback) {
    this.listeners.add(callback);
    return () => this.listeners.delete(callback);
  }
  cancel() {
    if (this.frame) cancelAnimationFrame(this.frame);
    this.frame = 0;
  }
}

// One IntersectionObserver per thread element: messages tell it when they come near.
const observers = new WeakMap();
function watch(element, callback) {
  const root = element.closest(".thread");
  let entry = observers.get(root);
  if (!entry) {
    const waiting = new Map();
    const observer = new IntersectionObserver(
      (seen) => {
        for (const item of seen) {
          if (!item.isIntersecting) continue;
          observer.unobserve(item.target);
          const then = waiting.get(item.target);
          waiting.delete(item.target);
          then?.();
        }
      },
      { root, rootMargin: "800px 0px" },
    );
    entry = { observer, waiting };
    observers.set(root, entry);
  }
  entry.waiting.set(element, callback);
  entry.observer.observe(element);
  return () => {
    entry.waiting.delete(element);
    entry.observer.unobserve(element);
  };
}

// A finished answer: plain text until near the screen, then its memoized Markdown.
function AnswerBody({ text, near }) {
  const [, setMath] = useState(0);
  const rendered = mathGeneration(); // KaTeX may arrive between this render and the effect
  useEffect(() => {
    if (!near || !hasMath(text)) return undefined;
    const stop = onMath(setMath);
    if (mathGeneration() !== rendered) setMath(mathGeneration());
    return stop;
  }, [near, text, rendered]);
  if (!near) return html`<div class="msg-body md plain" data-testid="message-body">${text}</div>`;
  return html`<div class="msg-body md" data-testid="message-body" dangerouslySetInnerHTML=${{ __html: memoized(text) }}></div>`;
}

// The streaming answer: its element is written directly, once per frame.
function LiveBody({ live }) {
  const ref = useRef(null);
  useEffect(() => {
    let shown = "";
    const paint = (text) => {
      if (!ref.current || text === shown) return;
      shown = text;
      ref.current.innerHTML = renderMarkdown(text);
    };
    const stop = live.listen(paint);
    if (live.text) live.push(""); // what arrived before this mounted
    // KaTeX or highlight.js arrived: draw again, within the once-a-frame rule
    const math = onMath(() => {
      shown = null;
      live.push("");
    });
    return () => {
      stop();
      math();
    };
  }, [live]);
  return html`<div ref=${ref} class="msg-body md" data-testid="message-body"></div>`;
}

function Meta({ meta, queueMs }) {
  if (!meta) return null;
  const parts = [];
  if (meta.model) parts.push(html`<span class="meta-model">${meta.model}</span>`);
  if (meta.upstream) parts.push(html`<span>${t("chat.meta.upstream", { name: meta.upstream })}</span>`);
  if (meta.tokens_in != null || meta.tokens_out != null) {
    parts.push(html`<span>${t("chat.meta.tokens", { in: number(meta.tokens_in), out: number(meta.tokens_out) })}</span>`);
  }
  if (queueMs) parts.push(html`<span>${t("chat.meta.queue", { ms: formatMs(queueMs) })}</span>`);
  if (meta.ttft_ms != null) parts.push(html`<span>${t("chat.meta.ttft", { ms: formatMs(meta.ttft_ms) })}</span>`);
  if (meta.latency_ms != null) parts.push(html`<span>${t("chat.meta.latency", { ms: formatMs(meta.latency_ms) })}</span>`);
  return html`<div class="msg-meta" data-testid="message-meta">${parts}</div>`;
}

function label(citation) {
  const where = citation.heading ? `${citation.document} § ${citation.heading}` : citation.document;
  return `[${citation.index}] ${where || citation.source || ""}`;
}

function Sources({ message, onSource }) {
  const list = message.citations || [];
  if (!list.length) return null;
  return html`<div class="msg-sources">
    <span class="muted small">${t("chat.sources")}</span>
    ${list.map(
      (citation) => html`<button
        type="button"
        class="citation"
        data-testid="citation"
        onClick=${() => onSource(message, citation)}
        title=${citation.score != null ? `${t("chat.source.score")} ${citation.score}` : undefined}
      >
        ${label(citation)}
      </button>`,
    )}
  </div>`;
}

function EditBox({ text, onSave, onCancel }) {
  const [value, setValue] = useState(text);
  const ref = useRef(null);
  useEffect(() => {
    ref.current.focus();
    ref.current.setSelectionRange(value.length, value.length);
  }, []);
  const keys = (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      if (value.trim()) onSave(value);
    } else if (event.key === "Escape") {
      event.preventDefault();
      event.stopPropagation();
      onCancel();
    }
  };
  return html`<div class="msg-edit">
    <textarea ref=${ref} data-testid="edit-box" rows="3" value=${value} onInput=${(e) => setValue(e.target.value)} onKeyDown=${keys}></textarea>
    <div class="row">
      <button class="primary" data-testid="edit-send" disabled=${!value.trim()} onClick=${() => onSave(value)}>${t("chat.edit.save")}</button>
      <button onClick=${onCancel}>${t("chat.edit.cancel")}</button>
    </div>
  </div>`;
}

// A message far off screen is drawn light (its text, plain) until it comes near.
class Message extends Component {
  constructor(props) {
    super(props);
    this.state = { near: props.eager };
  }
  componentDidMount() {
    if (!this.state.near) this.unwatch = watch(this.base, () => this.setState({ near: true }));
  }
  componentWillUnmount() {
    this.unwatch?.();
  }
  shouldComponentUpdate(next, state) {
    const now = this.props;
    return state.near !== this.state.near || next.message !== now.message || next.last !== now.last || next.busy !== now.busy || next.editing !== now.editing || next.lang !== now.lang;
  }
  render({ message, last, busy, editing, actions }, { near }) {
    if (!near) {
      return html`<article class=${`msg ${message.role}`} data-testid="message" data-role=${message.role}>
        <div class="msg-content"><div class="msg-body plain" data-testid="message-body">${message.text}</div></div>
      </article>`;
    }
    const { role } = message;
    const status = message.error
      ? html`<p class="msg-error" role="alert" data-testid="message-error">${t("chat.failed", { message: message.error })}</p>`
      : message.stopped
        ? html`<span class="badge warn" data-testid="message-stopped">${t("chat.stopped")}</span>`
        : message.meta?.incomplete
          ? html`<span class="badge warn">${t("chat.incomplete", { why: message.meta.incomplete })}</span>`
          : null;
    let body;
    if (role === "user") {
      body = editing
        ? html`<${EditBox} text=${message.text} onSave=${(text) => actions.edit(message, text)} onCancel=${() => actions.editing(null)} />`
        : html`<div class="msg-body plain" data-testid="message-body">${message.text}</div>`;
    } else if (message.streaming) {
      body = html`<${LiveBody} live=${message.live} />`;
    } else {
      body = html`<${AnswerBody} text=${message.text} near=${near} />`;
    }
    return html`<article
      class=${`msg ${role}`}
      data-testid="message"
      data-role=${role}
      data-streaming=${message.streaming ? "true" : undefined}
      data-index=${message.index ?? undefined}
    >
      <div class="msg-content">
        ${body}
        ${message.images?.length > 0 &&
        html`<div class="msg-images">${message.images.map((url) => html`<img src=${url} alt="" loading="lazy" />`)}</div>`}
      </div>
      ${role === "assistant" && message.streaming && !message.live.text && html`<span class="typing" aria-hidden="true"></span>`}
      ${status}
      ${role === "assistant" && html`<${Sources} message=${message} onSource=${actions.source} />`}
      ${role === "assistant" && !message.streaming && html`<${Meta} meta=${message.meta} queueMs=${message.queueMs} />`}
      ${!message.streaming &&
      !editing &&
      html`<div class="msg-actions">
        <button class="icon small" title=${t("chat.copy")} aria-label=${t("chat.copy")} onClick=${() => copyText(message.text)}><${Icon} name="copy" /></button>
        ${role === "user" &&
        html`<button class="icon small" data-testid="edit" title=${t("chat.edit")} aria-label=${t("chat.edit")} disabled=${busy} onClick=${() => actions.editing(message.key)}><${Icon} name="edit" /></button>`}
        ${role === "assistant" &&
        last &&
        html`<button class="icon small" data-testid="regenerate" title=${t("chat.regenerate")} aria-label=${t("chat.regenerate")} disabled=${busy} onClick=${actions.regenerate}><${Icon} name="regenerate" /></button>`}
      </div>`}
    </article>`;
  }
}

// Keeps the thread at its bottom while it grows, unless the reader scrolled up.
function useStickToBottom(ref, messages) {
  const stuck = useRef(true);
  useEffect(() => {
    const element = ref.current;
    const scrolled = () => {
      stuck.current = element.scrollHeight - element.scrollTop - element.clientHeight < 80;
    };
    element.addEventListener("scroll", scrolled, { passive: true });
    const grown = new ResizeObserver(() => {
      if (stuck.current) element.scrollTop = element.scrollHeight;
    });
    grown.observe(element.firstElementChild);
    return () => {
      element.removeEventListener("scroll", scrolled);
      grown.disconnect();
    };
  }, []);
  // in the same task as the render: messages off screen must not look near at first
  useLayoutEffect(() => {
    const element = ref.current;
    if (messages[messages.length - 1]?.streaming) stuck.current = true; // one just sent
    if (stuck.current) element.scrollTop = element.scrollHeight;
  }, [messages]);
}

export function Thread({ messages, busy, editing, eagerFrom, lang, actions, empty }) {
  const ref = useRef(null);
  useStickToBottom(ref, messages);
  const copyCode = (event) => {
    const button = event.target.closest(".copy-code");
    if (!button) return;
    const code = button.parentElement.querySelector("code");
    if (code) copyText(code.textContent);
  };
  const lastAssistant = messages.length && messages[messages.length - 1].role === "assistant" ? messages.length - 1 : -1;
  return html`<div class="thread" ref=${ref} onClick=${copyCode} data-testid="thread">
    <div class="thread-inner">
      ${messages.length === 0 && empty}
      ${messages.map(
        (message, i) => html`<${Message}
          key=${message.key}
          message=${message}
          last=${i === lastAssistant}
          busy=${busy}
          editing=${editing === message.key}
          eager=${i >= eagerFrom}
          lang=${lang}
          actions=${actions}
        />`,
      )}
    </div>
  </div>`;
}
