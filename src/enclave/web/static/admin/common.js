// Pieces the admin pages share: a confirm dialog, list and limit fields, a file download
// from an authenticated response, and the page header.
import { html, useRef, useState } from "../vendor/preact.js";
import { send } from "../core/api.js";
import { add, t } from "../core/i18n.js";
import { Dialog } from "../core/ui.js";

add({
  en: {
    "admin.yes": "Yes, go ahead",
    "admin.models": "Models (comma-separated; empty: all)",
    "admin.models.short": "Models",
    "admin.rpm": "Requests per minute",
    "admin.tpm": "Tokens per minute",
    "admin.concurrency": "Concurrent requests",
    "admin.nolimit": "no limit",
    "admin.all": "all",
    "admin.limits": "Limits",
    "admin.refresh": "Refresh",
    "admin.updated": "Updated {when}",
  },
  zh: {
    "admin.yes": "确定执行",
    "admin.models": "模型（逗号分隔；留空表示全部）",
    "admin.models.short": "模型",
    "admin.rpm": "每分钟请求数",
    "admin.tpm": "每分钟令牌数",
    "admin.concurrency": "并发请求数",
    "admin.nolimit": "不限",
    "admin.all": "全部",
    "admin.limits": "限制",
    "admin.refresh": "刷新",
    "admin.updated": "更新于 {when}",
  },
});

// const [ask, dialog] = useConfirm(); ... if (await ask(text)) ...; render ${dialog}.
export function useConfirm() {
  const [question, setQuestion] = useState(null);
  const answer = useRef(null);
  const ask = (text, { danger = true } = {}) =>
    new Promise((resolve) => {
      answer.current = resolve;
      setQuestion({ text, danger });
    });
  const close = (value) => {
    setQuestion(null);
    answer.current?.(value);
    answer.current = null;
  };
  const dialog = html`<${Dialog} open=${question !== null} onClose=${() => close(false)} title=${t("app.confirm")}>
    <p data-testid="confirm-text">${question?.text}</p>
    <div class="row end">
      <button onClick=${() => close(false)}>${t("app.cancel")}</button>
      <button class=${question?.danger ? "primary danger-fill" : "primary"} data-testid="confirm-yes" onClick=${() => close(true)}>
        ${t("admin.yes")}
      </button>
    </div>
  <//>`;
  return [ask, dialog];
}

// "a, b ,c" -> ["a", "b", "c"]
export function listOf(text) {
  return (text || "")
    .split(/[,\n]/)
    .map((item) => item.trim())
    .filter(Boolean);
}

// An <input type=number> value: "" -> null (no change / no limit), else an integer.
export function intOf(text) {
  const value = String(text ?? "").trim();
  return value === "" ? null : Number.parseInt(value, 10);
}

export function limitText(item) {
  const parts = [];
  if (item.rpm) parts.push(`${item.rpm} rpm`);
  if (item.tpm) parts.push(`${item.tpm} tpm`);
  if (item.max_concurrency) parts.push(`≤${item.max_concurrency}`);
  return parts.length ? parts.join(" · ") : t("admin.nolimit");
}

export function modelsText(models) {
  return models && models.length ? models.join(", ") : t("admin.all");
}

// The four fields of a policy (models, rpm, tpm, max_concurrency), bound to `form`.
export function PolicyFields({ form, set }) {
  const bind = (name) => ({ value: form[name] ?? "", onInput: (e) => set(name, e.target.value) });
  return html`<label>${t("admin.models")}<input name="models" ...${bind("models")} /></label>
    <div class="grid3">
      <label>${t("admin.rpm")}<input name="rpm" type="number" min="0" placeholder=${t("admin.nolimit")} ...${bind("rpm")} /></label>
      <label>${t("admin.tpm")}<input name="tpm" type="number" min="0" placeholder=${t("admin.nolimit")} ...${bind("tpm")} /></label>
      <label
        >${t("admin.concurrency")}<input
          name="max_concurrency"
          type="number"
          min="0"
          placeholder=${t("admin.nolimit")}
          ...${bind("max_concurrency")}
      /></label>
    </div>`;
}

// Form state: const [form, set, reset] = useForm({...}).
export function useForm(initial) {
  const [form, setForm] = useState(initial);
  const set = (name, value) => setForm((old) => ({ ...old, [name]: value }));
  return [form, set, setForm];
}

// Fetch with the session and save the answer as a file (the name from Content-Disposition).
export async function saveDownload(path, query, fallback) {
  const response = await send(path, { query });
  const blob = await response.blob();
  const disposition = response.headers.get("content-disposition") || "";
  const name = /filename="?([^";]+)"?/.exec(disposition)?.[1] || fallback;
  const link = document.createElement("a");
  link.href = URL.createObjectURL(blob);
  link.download = name;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(link.href), 1000);
  return name;
}

export function PageHead({ title, children }) {
  return html`<div class="page-head">
    <h1>${title}</h1>
    <span class="spacer"></span>
    ${children}
  </div>`;
}

export function time(iso) {
  if (!iso) return "–";
  return new Date(iso).toLocaleString();
}
