// The audit log: filtered pages from the server (keyset on seq, newest first; "Older"
// follows next_before), a record opened whole, the chain verified, an export downloaded.
import { html, useEffect, useState } from "../vendor/preact.js";
import { api } from "../core/api.js";
import { add, number, t, when } from "../core/i18n.js";
import { Action, Dialog, Loading, copyText, formatMs, toast } from "../core/ui.js";
import { PageHead, saveDownload, useForm } from "./common.js";

add({
  en: {
    "admin.audit.user": "User",
    "admin.audit.model": "Model",
    "admin.audit.action": "Action",
    "admin.audit.kind": "Kind",
    "admin.audit.status": "Status",
    "admin.audit.status.hint": "200, 4xx, 5xx, error",
    "admin.audit.since": "Since",
    "admin.audit.until": "Until",
    "admin.audit.q": "Search",
    "admin.audit.q.hint": "action, model, user or request id",
    "admin.audit.apply": "Apply",
    "admin.audit.clear": "Clear",
    "admin.audit.time": "Time",
    "admin.audit.tokens": "Tokens",
    "admin.audit.latency": "Latency",
    "admin.audit.older": "Older",
    "admin.audit.end": "The oldest record matching the filters is shown.",
    "admin.audit.none": "No records match.",
    "admin.audit.verify": "Verify the chain",
    "admin.audit.verifying": "Verifying…",
    "admin.audit.ok": "The chain is intact: {n} records checked.",
    "admin.audit.broken": "The chain is BROKEN at record {seq}: {reason} ({n} records checked).",
    "admin.audit.failed": "Verification failed: {reason} ({n} records checked).",
    "admin.audit.export": "Export",
    "admin.audit.exported": "Saved {name}",
    "admin.audit.record": "Record {seq}",
    "admin.audit.hash": "Hash",
    "admin.audit.prev": "Previous hash",
    "admin.audit.detail": "Detail",
    "admin.audit.content": "Content",
    "admin.audit.copy": "Copy as JSON",
  },
  zh: {
    "admin.audit.user": "用户",
    "admin.audit.model": "模型",
    "admin.audit.action": "操作",
    "admin.audit.kind": "类别",
    "admin.audit.status": "状态码",
    "admin.audit.status.hint": "200、4xx、5xx、error",
    "admin.audit.since": "起始时间",
    "admin.audit.until": "结束时间",
    "admin.audit.q": "搜索",
    "admin.audit.q.hint": "操作、模型、用户或请求 ID",
    "admin.audit.apply": "筛选",
    "admin.audit.clear": "清空",
    "admin.audit.time": "时间",
    "admin.audit.tokens": "令牌",
    "admin.audit.latency": "延迟",
    "admin.audit.older": "更早的记录",
    "admin.audit.end": "已显示符合条件的最早记录。",
    "admin.audit.none": "没有符合条件的记录。",
    "admin.audit.verify": "校验哈希链",
    "admin.audit.verifying": "正在校验…",
    "admin.audit.ok": "哈希链完整：已校验 {n} 条记录。",
    "admin.audit.broken": "哈希链在第 {seq} 条记录处断裂：{reason}（已校验 {n} 条记录）。",
    "admin.audit.failed": "校验未通过：{reason}（已校验 {n} 条记录）。",
    "admin.audit.export": "导出",
    "admin.audit.exported": "已保存 {name}",
    "admin.audit.record": "记录 {seq}",
    "admin.audit.hash": "哈希",
    "admin.audit.prev": "前一条哈希",
    "admin.audit.detail": "详情",
    "admin.audit.content": "内容",
    "admin.audit.copy": "复制为 JSON",
  },
});

const EMPTY = { user: "", model: "", action: "", status: "", since: "", until: "", q: "" };
const PAGE = 50;

// datetime-local gives local time without a zone: send it as UTC ISO.
function query(filters) {
  const out = { ...filters };
  for (const name of ["since", "until"]) out[name] = filters[name] ? new Date(filters[name]).toISOString() : "";
  return out;
}

function statusTone(status) {
  if (status === null || status === undefined) return "";
  return status >= 500 ? "error" : status >= 400 ? "warn" : "ok";
}

function Filters({ onApply }) {
  const [form, set, reset] = useForm(EMPTY);
  const field = (name, extra = {}) => html`<label
    >${t(`admin.audit.${name}`)}
    <input name=${name} data-testid=${`audit-filter-${name}`} value=${form[name]} onInput=${(e) => set(name, e.target.value)} ...${extra}
  /></label>`;
  return html`<form
    class="card filters"
    data-testid="audit-filters"
    onSubmit=${(e) => {
      e.preventDefault();
      onApply(form);
    }}
  >
    ${field("q", { type: "search", placeholder: t("admin.audit.q.hint") })} ${field("user")} ${field("model")} ${field("action")}
    ${field("status", { placeholder: t("admin.audit.status.hint") })} ${field("since", { type: "datetime-local" })}
    ${field("until", { type: "datetime-local" })}
    <div class="row end filter-buttons">
      <button
        type="button"
        onClick=${() => {
          reset(EMPTY);
          onApply(EMPTY);
        }}
      >
        ${t("admin.audit.clear")}
      </button>
      <button class="primary" data-testid="audit-apply">${t("admin.audit.apply")}</button>
    </div>
  </form>`;
}

function Verdict({ verdict }) {
  if (!verdict) return null;
  const n = number(verdict.checked);
  const text = verdict.ok
    ? t("admin.audit.ok", { n })
    : verdict.first_bad_seq !== null
      ? t("admin.audit.broken", { seq: verdict.first_bad_seq, reason: verdict.reason, n })
      : t("admin.audit.failed", { reason: verdict.reason, n });
  return html`<div class=${`verdict card ${verdict.ok ? "good" : "bad"}`} role="status" data-testid="audit-verdict" data-ok=${String(verdict.ok)}>
    <strong>${verdict.ok ? "✓" : "✗"} ${text}</strong>
    ${verdict.witness && html`<div class="small muted">${verdict.witness}</div>`}
  </div>`;
}

function Record({ seq }) {
  const [record, setRecord] = useState(null);
  const [error, setError] = useState(null);
  useEffect(() => {
    api(`/api/admin/audit/${seq}`).then(setRecord, setError);
  }, [seq]);
  if (!record) return html`<${Loading} error=${error} />`;
  const { detail, content, hash, prev_hash: prev, images, ...head } = record;
  return html`<div class="stack" data-testid="audit-record">
    <dl class="facts">
      ${Object.entries(head).map(([k, v]) => html`<dt>${k}</dt><dd>${v === null ? "–" : String(v)}</dd>`)}
      <dt>${t("admin.audit.hash")}</dt><dd class="mono wrap">${hash}</dd>
      <dt>${t("admin.audit.prev")}</dt><dd class="mono wrap">${prev}</dd>
      ${images?.length > 0 && html`<dt>images</dt><dd class="mono wrap">${images.join(", ")}</dd>`}
    </dl>
    <h3>${t("admin.audit.detail")}</h3>
    <pre class="json">${JSON.stringify(detail, null, 2)}</pre>
    ${content && html`<h3>${t("admin.audit.content")}</h3><pre class="json">${content}</pre>`}
    <div class="row end"><button onClick=${() => copyText(JSON.stringify(record, null, 2))}>${t("admin.audit.copy")}</button></div>
  </div>`;
}

export default function Audit() {
  const [filters, setFilters] = useState(EMPTY);
  const [pages, setPages] = useState({ rows: null, next: null, error: null });
  const [open, setOpen] = useState(null);
  const [verdict, setVerdict] = useState(null);
  const [format, setFormat] = useState("jsonl");
  const load = async (before, rows) => {
    try {
      const found = await api("/api/admin/audit", { query: { ...query(filters), before, limit: PAGE } });
      setPages({ rows: [...rows, ...found.data], next: found.next_before, error: null });
    } catch (error) {
      setPages((old) => ({ ...old, error }));
    }
  };
  useEffect(() => {
    setPages({ rows: null, next: null, error: null });
    load(undefined, []);
  }, [filters]);
  const verify = async () => {
    setVerdict(null);
    setVerdict(await api("/api/admin/audit/verify", { method: "POST", json: {} }));
  };
  const exportRows = async () => {
    const name = await saveDownload("/api/admin/audit/export", { ...query(filters), format }, `audit.${format}`);
    toast(t("admin.audit.exported", { name }));
  };
  const rows = pages.rows;
  return html`<main class="page admin">
    <${PageHead} title=${t("admin.nav.audit")}>
      <${Action} class="primary" testid="audit-verify" run=${verify}>${t("admin.audit.verify")}<//>
      <div class="row nowrap">
        <select aria-label=${t("admin.audit.export")} value=${format} onChange=${(e) => setFormat(e.target.value)} data-testid="audit-format">
          <option value="jsonl">JSON lines</option>
          <option value="csv">CSV</option>
        </select>
        <${Action} testid="audit-export" run=${exportRows}>${t("admin.audit.export")}<//>
      </div>
    <//>
    <${Verdict} verdict=${verdict} />
    <${Filters} onApply=${(f) => setFilters({ ...f })} />
    ${rows === null
      ? html`<${Loading} error=${pages.error} retry=${() => load(undefined, [])} />`
      : html`<div class="card table-wrap">
          <table data-testid="audit-table" class="audit">
            <thead>
              <tr>
                <th class="num">#</th>
                <th>${t("admin.audit.time")}</th>
                <th>${t("admin.audit.action")}</th>
                <th>${t("admin.audit.user")}</th>
                <th>${t("admin.audit.model")}</th>
                <th class="num">${t("admin.audit.status")}</th>
                <th class="num">${t("admin.audit.tokens")}</th>
                <th class="num">${t("admin.audit.latency")}</th>
              </tr>
            </thead>
            <tbody>
              ${rows.map(
                (r) => html`<tr
                  key=${r.seq}
                  class="clickable"
                  tabindex="0"
                  data-testid="audit-row"
                  data-seq=${r.seq}
                  onClick=${() => setOpen(r.seq)}
                  onKeyDown=${(e) => e.key === "Enter" && setOpen(r.seq)}
                >
                  <td class="num muted">${r.seq}</td>
                  <td class="small nowrap">${when(r.ts)}</td>
                  <td><code>${r.action}</code> <span class="muted small">${r.kind}</span></td>
                  <td>${r.user || "–"}${r.key_prefix ? html` <span class="muted small">${r.key_prefix}</span>` : ""}</td>
                  <td class="small">${r.model || "–"}</td>
                  <td class="num">${r.status !== null ? html`<span class=${`badge ${statusTone(r.status)}`}>${r.status}</span>` : "–"}</td>
                  <td class="num small">${r.tokens_in !== null || r.tokens_out !== null ? `${r.tokens_in ?? 0} / ${r.tokens_out ?? 0}` : "–"}</td>
                  <td class="num small">${formatMs(r.latency_ms)}</td>
                </tr>`,
              )}
            </tbody>
          </table>
          ${!rows.length && html`<p class="muted">${t("admin.audit.none")}</p>`}
          ${pages.error && html`<${Loading} error=${pages.error} />`}
          <div class="row end">
            ${pages.next !== null
              ? html`<${Action} testid="audit-older" run=${() => load(pages.next, rows)}>${t("admin.audit.older")} ↓<//>`
              : rows.length > 0 && html`<span class="muted small">${t("admin.audit.end")}</span>`}
          </div>
        </div>`}
    <${Dialog} wide open=${open !== null} onClose=${() => setOpen(null)} title=${t("admin.audit.record", { seq: open })}>
      ${open !== null && html`<${Record} seq=${open} />`}
    <//>
  </main>`;
}
