// The composer (message box, attachments, send and stop) and the model picker.
import { html, useEffect, useRef, useState } from "../vendor/preact.js";
import { t } from "../core/i18n.js";
import { toast } from "../core/ui.js";
import { human, prepareFile } from "./attach.js";
import { Icon } from "./icons.js";

const MODEL = "enclave.chat.model";
export const ASSISTANT_PREFIX = "assistant/";

export const isAssistant = (card) => card.owned_by === "enclave-assistant" || card.id.startsWith(ASSISTANT_PREFIX);

export function savedModel() {
  return localStorage.getItem(MODEL);
}

export function ModelPicker({ models, value, onChange }) {
  const byId = (a, b) => a.id.localeCompare(b.id);
  const plain = models.filter((m) => !isAssistant(m)).sort(byId);
  const assistants = models.filter(isAssistant).sort(byId);
  const pick = (event) => {
    localStorage.setItem(MODEL, event.target.value);
    onChange(event.target.value);
  };
  if (!models.length) return html`<span class="muted small" data-testid="model-picker">${t("chat.nomodels")}</span>`;
  return html`<select class="model-picker" data-testid="model-picker" aria-label=${t("chat.model")} value=${value} onChange=${pick}>
    ${plain.length > 0 && html`<optgroup label=${t("chat.models")}>${plain.map((m) => html`<option value=${m.id}>${m.id}</option>`)}</optgroup>`}
    ${assistants.length > 0 &&
    html`<optgroup label=${t("chat.assistants")}>
      ${assistants.map((m) => html`<option value=${m.id} data-assistant="true">${m.id.slice(ASSISTANT_PREFIX.length)} (${t("chat.assistant")})</option>`)}
    </optgroup>`}
  </select>`;
}

function Chip({ item, onRemove }) {
  const size = item.kind === "image" && item.changed ? t("chat.attach.resized", { from: human(item.originalBytes), to: human(item.bytes) }) : human(item.bytes);
  return html`<span class="chip" data-testid="attachment" data-kind=${item.kind} data-width=${item.size?.[0]} data-height=${item.size?.[1]}>
    ${item.kind === "image" ? html`<img src=${item.url} alt="" />` : html`<${Icon} name="file" />`}
    <span class="chip-name">${item.name}</span>
    <span class="muted small">${size}</span>
    <button type="button" class="icon small" aria-label=${t("chat.attachment.remove", { name: item.name })} onClick=${() => onRemove(item.id)}><${Icon} name="close" /></button>
  </span>`;
}

// The composer's state lives in the page (so a failed send can put the text back).
export function Composer({ text, setText, attachments, setAttachments, busy, canSend, onSend, onStop, onEditLast, inputRef }) {
  const fileRef = useRef(null);
  const [dragging, setDragging] = useState(false);
  const add = async (files) => {
    for (const file of files) {
      try {
        const item = await prepareFile(file);
        setAttachments((now) => [...now, item]);
      } catch (error) {
        toast(error.message, "error");
      }
    }
  };
  const keys = (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      if (!busy && canSend) onSend();
    } else if (event.key === "ArrowUp" && !text && !attachments.length) {
      if (onEditLast()) event.preventDefault();
    }
  };
  const paste = (event) => {
    const files = [...(event.clipboardData?.files || [])];
    if (!files.length) return;
    event.preventDefault();
    add(files);
  };
  useEffect(() => {
    // Files dropped anywhere on the page are attached.
    const over = (event) => {
      if (![...(event.dataTransfer?.types || [])].includes("Files")) return;
      event.preventDefault();
      setDragging(true);
    };
    const leave = (event) => {
      if (!event.relatedTarget) setDragging(false);
    };
    const drop = (event) => {
      if (!event.dataTransfer?.files?.length) return;
      event.preventDefault();
      setDragging(false);
      add([...event.dataTransfer.files]);
    };
    window.addEventListener("dragover", over);
    window.addEventListener("dragleave", leave);
    window.addEventListener("drop", drop);
    return () => {
      window.removeEventListener("dragover", over);
      window.removeEventListener("dragleave", leave);
      window.removeEventListener("drop", drop);
    };
  }, []);
  return html`<form class=${`composer ${dragging ? "dragging" : ""}`} onSubmit=${(e) => (e.preventDefault(), !busy && canSend && onSend())}>
    ${attachments.length > 0 &&
    html`<div class="chips">${attachments.map((item) => html`<${Chip} key=${item.id} item=${item} onRemove=${(id) => setAttachments((now) => now.filter((a) => a.id !== id))} />`)}</div>`}
    ${dragging && html`<div class="drop-hint">${t("chat.drop")}</div>`}
    <div class="composer-row">
      <button type="button" class="icon attach" data-testid="attach" title=${t("chat.attach")} aria-label=${t("chat.attach")} onClick=${() => fileRef.current.click()}><${Icon} name="attach" /></button>
      <input
        ref=${fileRef}
        type="file"
        multiple
        class="hidden"
        data-testid="attach-input"
        onChange=${(e) => {
          add([...e.target.files]);
          e.target.value = "";
        }}
      />
      <textarea
        ref=${inputRef}
        data-testid="composer"
        rows="1"
        placeholder=${t("chat.placeholder")}
        aria-label=${t("chat.placeholder")}
        value=${text}
        onInput=${(e) => setText(e.target.value)}
        onKeyDown=${keys}
        onPaste=${paste}
      ></textarea>
      ${busy
        ? html`<button type="button" class="danger stop" data-testid="stop" onClick=${onStop}><${Icon} name="stop" /> ${t("chat.stop")}</button>`
        : html`<button type="submit" class="primary send" data-testid="send" disabled=${!canSend}>${t("chat.send")}</button>`}
    </div>
  </form>`;
}
