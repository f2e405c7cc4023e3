// API keys: list (by user), create and rotate (the secret shown once), edit scope, limits
// and allowlist (PATCH /api/admin/keys/{prefix}), revoke.
import { html, useState } from "../vendor/preact.js";
import { api } from "../core/api.js";
import { add, t, when } from "../core/i18n.js";
import { Action, Dialog, Loading, copyText, toast, useAsync } from "../core/ui.js";
import { PageHead, PolicyFields, intOf, limitText, listOf, modelsText, useConfirm, useForm } from "./common.js";

add({
  en: {
    "admin.keys.new": "New key",
    "admin.keys.user": "User",
    "admin.keys.anyone": "All users",
    "admin.keys.name": "Name",
    "admin.keys.prefix": "Prefix",
    "admin.keys.expires": "Expires after (e.g. 30d, 12h, never)",
    "admin.keys.allow": "Allowed client networks (CIDRs, comma-separated; empty: any)",
    "admin.keys.allow.short": "Allowlist",
    "admin.keys.any": "any",
    "admin.keys.status": "Status",
    "admin.keys.active": "active",
    "admin.keys.revoked": "revoked",
    "admin.keys.expired": "expired",
    "admin.keys.expires.short": "Expires",
    "admin.keys.never": "never",
    "admin.keys.used": "Last used",
    "admin.keys.edit": "Edit",
    "admin.keys.edit.title": "Edit key {prefix}",
    "admin.keys.revoke": "Revoke",
    "admin.keys.rotate": "Rotate",
    "admin.keys.revoke.confirm": "Revoke key {prefix} ({name})? Programs using it are refused from now on.",
    "admin.keys.rotate.confirm": "Rotate key {prefix}? The old secret stops working now; a new one is shown once.",
    "admin.keys.secret.title": "The new key",
    "admin.keys.secret.warn": "Copy this key now. It is shown only this once and cannot be shown again.",
    "admin.keys.secret.done": "I have copied it",
    "admin.keys.revoked.toast": "Key {prefix} revoked",
    "admin.keys.saved": "Key saved",
    "admin.keys.limits.hint": "0 removes a limit.",
    "admin.keys.show_revoked": "Show revoked",
  },
  zh: {
    "admin.keys.new": "新建密钥",
    "admin.keys.user": "用户",
    "admin.keys.anyone": "全部用户",
    "admin.keys.name": "名称",
    "admin.keys.prefix": "前缀",
    "admin.keys.expires": "有效期（如 30d、12h、never）",
    "admin.keys.allow": "允许的客户端网段（CIDR，逗号分隔；留空表示不限）",
    "admin.keys.allow.short": "允许网段",
    "admin.keys.any": "不限",
    "admin.keys.status": "状态",
    "admin.keys.active": "有效",
    "admin.keys.revoked": "已吊销",
    "admin.keys.expired": "已过期",
    "admin.keys.expires.short": "到期时间",
    "admin.keys.never": "永不过期",
    "admin.keys.used": "最近使用",
    "admin.keys.edit": "编辑",
    "admin.keys.edit.title": "编辑密钥 {prefix}",
    "admin.keys.revoke": "吊销",
    "admin.keys.rotate": "轮换",
    "admin.keys.revoke.confirm": "吊销密钥 {prefix}（{name}）？使用它的程序将从现在起被拒绝。",
    "admin.keys.rotate.confirm": "轮换密钥 {prefix}？旧密钥立即失效；新密钥只显示一次。",
    "admin.keys.secret.title": "新密钥",
    "admin.keys.secret.warn": "请立即复制此密钥。它只显示这一次，之后无法再次查看。",
    "admin.keys.secret.done": "我已复制",
    "admin.keys.revoked.toast": "密钥 {prefix} 已吊销",
    "admin.keys.saved": "密钥已保存",
    "admin.keys.limits.hint": "填 0 表示取消该限制。",
    "admin.keys.show_revoked": "显示已吊销",
  },
});

function status(key) {
  if (key.revoked_at) return ["revoked", "error"];
  if (key.expires_at && Date.parse(key.expires_at) < Date.now()) return ["expired", "warn"];
  return ["active", "ok"];
}

function Secret({ secret, onClose }) {
  return html`<div class="stack">
    <p class="notice warn" role="alert">${t("admin.keys.secret.warn")}</p>
    <div class="secret-box">
      <code data-testid="key-secret">${secret.key}</code>
      <button class="primary" data-testid="key-secret-copy" onClick=${() => copyText(secret.key)}>${t("app.copy")}</button>
    </div>
    <p class="muted small">${secret.prefix} · ${secret.name} · ${secret.user}</p>
    <div class="row end"><button data-testid="key-secret-done" onClick=${onClose}>${t("admin.keys.secret.done")}</button></div>
  </div>`;
}

function KeyForm({ users, user, onMade }) {
  const [form, set] = useForm({ user: user || users[0]?.name || "", name: "", expires: "30d", models: "", allow: "" });
  const submit = async () => {
    const body = {
      user: form.user,
      name: form.name.trim(),
      expires: form.expires.trim() || "never",
      models: listOf(form.models),
      allow: listOf(form.allow),
      rpm: intOf(form.rpm) || null,
      tpm: intOf(form.tpm) || null,
      max_concurrency: intOf(form.max_concurrency) || null,
    };
    onMade(await api("/api/admin/keys", { method: "POST", json: body }));
  };
  return html`<form class="stack" data-testid="key-form" onSubmit=${(e) => e.preventDefault()}>
    <label
      >${t("admin.keys.user")}
      <select name="user" value=${form.user} onChange=${(e) => set("user", e.target.value)}>
        ${users.map((u) => html`<option value=${u.name}>${u.name}</option>`)}
      </select></label
    >
    <label>${t("admin.keys.name")}<input name="name" required autofocus value=${form.name} onInput=${(e) => set("name", e.target.value)} /></label>
    <label>${t("admin.keys.expires")}<input name="expires" value=${form.expires} onInput=${(e) => set("expires", e.target.value)} /></label>
    <${PolicyFields} form=${form} set=${set} />
    <label>${t("admin.keys.allow")}<input name="allow" placeholder="10.0.0.0/8, 192.168.1.0/24" value=${form.allow} onInput=${(e) => set("allow", e.target.value)} /></label>
    <div class="row end">
      <${Action} class="primary" testid="key-create" run=${submit} disabled=${!form.name.trim() || !form.user}>${t("app.save")}<//>
    </div>
  </form>`;
}

function EditKey({ item, onDone }) {
  const [form, set] = useForm({
    name: item.name,
    models: item.models.join(", "),
    rpm: item.rpm ?? "",
    tpm: item.tpm ?? "",
    max_concurrency: item.max_concurrency ?? "",
    allow: item.allow.join(", "),
  });
  const submit = async () => {
    const body = {
      name: form.name.trim() || null,
      models: listOf(form.models),
      allow: listOf(form.allow),
      rpm: intOf(form.rpm) ?? 0,
      tpm: intOf(form.tpm) ?? 0,
      max_concurrency: intOf(form.max_concurrency) ?? 0,
    };
    await api(`/api/admin/keys/${encodeURIComponent(item.prefix)}`, { method: "PATCH", json: body });
    toast(t("admin.keys.saved"));
    onDone();
  };
  return html`<form class="stack" data-testid="key-edit" onSubmit=${(e) => e.preventDefault()}>
    <label>${t("admin.keys.name")}<input name="name" value=${form.name} onInput=${(e) => set("name", e.target.value)} /></label>
    <${PolicyFields} form=${form} set=${set} />
    <label>${t("admin.keys.allow")}<input name="allow" value=${form.allow} onInput=${(e) => set("allow", e.target.value)} /></label>
    <div class="row end"><${Action} class="primary" testid="key-save" run=${submit}>${t("app.save")}<//></div>
  </form>`;
}

function KeyRow({ item, open, ask, reload, showSecret }) {
  const [state, tone] = status(item);
  const path = `/api/admin/keys/${encodeURIComponent(item.prefix)}`;
  const revoke = async () => {
    if (!(await ask(t("admin.keys.revoke.confirm", { prefix: item.prefix, name: item.name })))) return;
    await api(`${path}/revoke`, { method: "POST" });
    toast(t("admin.keys.revoked.toast", { prefix: item.prefix }));
    reload();
  };
  const rotate = async () => {
    if (!(await ask(t("admin.keys.rotate.confirm", { prefix: item.prefix })))) return;
    showSecret(await api(`${path}/rotate`, { method: "POST" }));
    reload();
  };
  const live = state !== "revoked";
  return html`<tr data-testid="key-row" data-prefix=${item.prefix} class=${live ? "" : "dim"}>
    <td data-label=${t("admin.keys.prefix")}><code>${item.prefix}</code></td>
    <td data-label=${t("admin.keys.name")}>${item.name}</td>
    <td data-label=${t("admin.keys.user")}>${item.user}</td>
    <td data-label=${t("admin.keys.status")}><span class=${`badge ${tone}`} data-testid="key-status">${t(`admin.keys.${state}`)}</span></td>
    <td data-label=${t("admin.models.short")} class="wrap small">${modelsText(item.models)}</td>
    <td data-label=${t("admin.limits")} class="small">${limitText(item)}</td>
    <td data-label=${t("admin.keys.allow.short")} class="wrap small">${item.allow.length ? item.allow.join(", ") : t("admin.keys.any")}</td>
    <td data-label=${t("admin.keys.expires.short")} class="small muted">${item.expires_at ? when(item.expires_at) : t("admin.keys.never")}</td>
    <td data-label=${t("admin.keys.used")} class="small muted">${item.last_used_at ? when(item.last_used_at) : "–"}</td>
    <td class="actions">
      ${live &&
      html`<button onClick=${() => open({ kind: "edit", item })} data-testid="key-edit-open">${t("admin.keys.edit")}</button>
        <${Action} run=${rotate} testid="key-rotate">${t("admin.keys.rotate")}<//>
        <${Action} class="danger" run=${revoke} testid="key-revoke">${t("admin.keys.revoke")}<//>`}
    </td>
  </tr>`;
}

export default function Keys() {
  const [user, setUser] = useState("");
  const [revoked, setRevoked] = useState(false);
  const [users] = useAsync(() => api("/api/admin/users"), []);
  const [keys, error, reload] = useAsync(() => api("/api/admin/keys", { query: { user } }), [user]);
  const [dialog, setDialog] = useState(null);
  const [ask, confirmDialog] = useConfirm();
  const showSecret = (secret) => setDialog({ kind: "secret", secret });
  const shown = (keys?.data || []).filter((k) => revoked || !k.revoked_at);
  const titles = { create: t("admin.keys.new"), secret: t("admin.keys.secret.title") };
  const title = dialog?.kind === "edit" ? t("admin.keys.edit.title", { prefix: dialog.item.prefix }) : titles[dialog?.kind] || "";
  return html`<main class="page admin">
    <${PageHead} title=${t("admin.nav.keys")}>
      <select data-testid="key-filter-user" aria-label=${t("admin.keys.user")} value=${user} onChange=${(e) => setUser(e.target.value)}>
        <option value="">${t("admin.keys.anyone")}</option>
        ${(users?.data || []).map((u) => html`<option value=${u.name}>${u.name}</option>`)}
      </select>
      <label class="check"><input type="checkbox" checked=${revoked} onChange=${(e) => setRevoked(e.target.checked)} /> ${t("admin.keys.show_revoked")}</label>
      <button class="primary" data-testid="key-new" disabled=${!users} onClick=${() => setDialog({ kind: "create" })}>${t("admin.keys.new")}</button>
    <//>
    ${!keys
      ? html`<${Loading} error=${error} retry=${reload} />`
      : html`<div class="card table-wrap">
          <table class="cards-on-phone" data-testid="key-table">
            <thead>
              <tr>
                <th>${t("admin.keys.prefix")}</th>
                <th>${t("admin.keys.name")}</th>
                <th>${t("admin.keys.user")}</th>
                <th>${t("admin.keys.status")}</th>
                <th>${t("admin.models.short")}</th>
                <th>${t("admin.limits")}</th>
                <th>${t("admin.keys.allow.short")}</th>
                <th>${t("admin.keys.expires.short")}</th>
                <th>${t("admin.keys.used")}</th>
                <th></th>
              </tr>
            </thead>
            <tbody>
              ${shown.map((item) => html`<${KeyRow} key=${item.prefix} item=${item} open=${setDialog} ask=${ask} reload=${reload} showSecret=${showSecret} />`)}
            </tbody>
          </table>
          ${!shown.length && html`<p class="muted">${t("app.empty")}</p>`}
        </div>`}
    <${Dialog} open=${dialog !== null} onClose=${() => setDialog(null)} title=${title}>
      ${dialog?.kind === "create" &&
      html`<${KeyForm}
        users=${users?.data || []}
        user=${user}
        onMade=${(secret) => {
          showSecret(secret);
          reload();
        }}
      />`}
      ${dialog?.kind === "edit" &&
      html`<${EditKey}
        item=${dialog.item}
        onDone=${() => {
          setDialog(null);
          reload();
        }}
      />`}
      ${dialog?.kind === "secret" && html`<${Secret} secret=${dialog.secret} onClose=${() => setDialog(null)} />`}
    <//>
    ${confirmDialog}
  </main>`;
}
