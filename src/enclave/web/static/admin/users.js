// Users: list, create, change role and limits, disable/enable, reset a password
// (/api/admin/users). A new role, a disable or a new password ends the user's web sessions.
import { html, useState } from "../vendor/preact.js";
import { api } from "../core/api.js";
import { add, t, when } from "../core/i18n.js";
import { Action, Dialog, Loading, toast, useAsync } from "../core/ui.js";
import { PageHead, PolicyFields, intOf, limitText, listOf, modelsText, useConfirm, useForm } from "./common.js";

add({
  en: {
    "admin.users.new": "New user",
    "admin.users.name": "Name",
    "admin.users.role": "Role",
    "admin.users.role.admin": "Administrator",
    "admin.users.role.user": "User",
    "admin.users.password": "Password",
    "admin.users.status": "Status",
    "admin.users.active": "active",
    "admin.users.directory": "directory",
    "admin.users.directory.title": "Signs in with the company directory (LDAP): password and groups live there",
    "admin.users.disabled": "disabled",
    "admin.users.created": "Created",
    "admin.users.edit": "Edit",
    "admin.users.edit.title": "Edit {name}",
    "admin.users.reset": "Reset password",
    "admin.users.reset.title": "New password for {name}",
    "admin.users.disable": "Disable",
    "admin.users.enable": "Enable",
    "admin.users.disable.confirm": "Disable {name}? Their web sessions end now and their API keys stop working.",
    "admin.users.created.toast": "User {name} created",
    "admin.users.saved": "Saved",
    "admin.users.reset.done": "Password changed; {name}'s sessions were signed out",
    "admin.users.limits.hint": "Empty keeps a limit as it is; 0 removes it.",
    "admin.users.filter": "Filter users",
  },
  zh: {
    "admin.users.new": "新建用户",
    "admin.users.name": "用户名",
    "admin.users.role": "角色",
    "admin.users.role.admin": "管理员",
    "admin.users.role.user": "普通用户",
    "admin.users.password": "密码",
    "admin.users.status": "状态",
    "admin.users.active": "启用",
    "admin.users.directory": "目录",
    "admin.users.directory.title": "通过公司目录（LDAP）登录：密码和所属组由目录管理",
    "admin.users.disabled": "已停用",
    "admin.users.created": "创建时间",
    "admin.users.edit": "编辑",
    "admin.users.edit.title": "编辑 {name}",
    "admin.users.reset": "重置密码",
    "admin.users.reset.title": "为 {name} 设置新密码",
    "admin.users.disable": "停用",
    "admin.users.enable": "启用",
    "admin.users.disable.confirm": "停用 {name}？其网页会话将立即结束，API 密钥也将失效。",
    "admin.users.created.toast": "已创建用户 {name}",
    "admin.users.saved": "已保存",
    "admin.users.reset.done": "密码已更改；{name} 的会话已全部退出",
    "admin.users.limits.hint": "留空表示保持不变；填 0 表示取消该限制。",
    "admin.users.filter": "筛选用户",
  },
});

const ROLES = ["user", "admin"];

function RoleSelect({ value, onChange }) {
  return html`<label
    >${t("admin.users.role")}
    <select name="role" value=${value} onChange=${(e) => onChange(e.target.value)}>
      ${ROLES.map((role) => html`<option value=${role}>${t(`admin.users.role.${role}`)}</option>`)}
    </select></label
  >`;
}

function policy(form) {
  return {
    models: form.models === undefined ? undefined : listOf(form.models),
    rpm: intOf(form.rpm),
    tpm: intOf(form.tpm),
    max_concurrency: intOf(form.max_concurrency),
  };
}

function CreateUser({ onDone }) {
  const [form, set] = useForm({ name: "", role: "user", password: "", models: "" });
  const submit = async () => {
    const body = { name: form.name.trim(), role: form.role, password: form.password, ...policy(form) };
    const user = await api("/api/admin/users", { method: "POST", json: body });
    toast(t("admin.users.created.toast", { name: user.name }));
    onDone();
  };
  return html`<form class="stack" data-testid="user-form" onSubmit=${(e) => e.preventDefault()}>
    <label
      >${t("admin.users.name")}
      <input name="name" required autofocus pattern="[A-Za-z0-9._@-]+" value=${form.name} onInput=${(e) => set("name", e.target.value)}
    /></label>
    <${RoleSelect} value=${form.role} onChange=${(v) => set("role", v)} />
    <label
      >${t("admin.users.password")}
      <input name="password" type="password" autocomplete="new-password" required value=${form.password} onInput=${(e) => set("password", e.target.value)}
    /></label>
    <${PolicyFields} form=${form} set=${set} />
    <div class="row end">
      <${Action} class="primary" testid="user-create" run=${submit} disabled=${!form.name.trim() || !form.password}>${t("app.save")}<//>
    </div>
  </form>`;
}

function EditUser({ user, onDone }) {
  const [form, set] = useForm({
    role: user.role,
    models: (user.models || []).join(", "),
    rpm: user.rpm ?? "",
    tpm: user.tpm ?? "",
    max_concurrency: user.max_concurrency ?? "",
  });
  const submit = async () => {
    const body = { ...policy(form), role: form.role === user.role ? undefined : form.role };
    await api(`/api/admin/users/${encodeURIComponent(user.name)}`, { method: "PATCH", json: body });
    toast(t("admin.users.saved"));
    onDone();
  };
  return html`<form class="stack" data-testid="user-edit" onSubmit=${(e) => e.preventDefault()}>
    <${RoleSelect} value=${form.role} onChange=${(v) => set("role", v)} />
    <${PolicyFields} form=${form} set=${set} />
    <p class="muted small">${t("admin.users.limits.hint")}</p>
    <div class="row end"><${Action} class="primary" testid="user-save" run=${submit}>${t("app.save")}<//></div>
  </form>`;
}

function ResetPassword({ user, onDone }) {
  const [password, setPassword] = useState("");
  const submit = async () => {
    await api(`/api/admin/users/${encodeURIComponent(user.name)}/password`, { method: "POST", json: { password } });
    toast(t("admin.users.reset.done", { name: user.name }));
    onDone();
  };
  return html`<form class="stack" onSubmit=${(e) => e.preventDefault()}>
    <label
      >${t("admin.users.password")}
      <input type="password" autocomplete="new-password" autofocus required value=${password} onInput=${(e) => setPassword(e.target.value)}
    /></label>
    <div class="row end"><${Action} class="primary" testid="password-save" run=${submit} disabled=${!password}>${t("app.save")}<//></div>
  </form>`;
}

function UserRow({ user, self, open, reload, ask }) {
  const path = `/api/admin/users/${encodeURIComponent(user.name)}`;
  const toggle = async () => {
    if (!user.disabled && !(await ask(t("admin.users.disable.confirm", { name: user.name })))) return;
    await api(`${path}/${user.disabled ? "enable" : "disable"}`, { method: "POST" });
    reload();
  };
  return html`<tr data-testid="user-row" data-name=${user.name}>
    <td data-label=${t("admin.users.name")}>
      <strong>${user.name}</strong>
      ${user.source === "ldap" && html` <span class="badge" title=${t("admin.users.directory.title")} data-testid="user-source">${t("admin.users.directory")}</span>`}
    </td>
    <td data-label=${t("admin.users.role")}><span class=${`badge ${user.role === "admin" ? "warn" : ""}`}>${t(`admin.users.role.${user.role}`)}</span></td>
    <td data-label=${t("admin.users.status")}>
      <span class=${`badge ${user.disabled ? "error" : "ok"}`}>${user.disabled ? t("admin.users.disabled") : t("admin.users.active")}</span>
    </td>
    <td data-label=${t("admin.models.short")} class="wrap small">${modelsText(user.models)}</td>
    <td data-label=${t("admin.limits")} class="small">${limitText(user)}</td>
    <td data-label=${t("admin.users.created")} class="small muted">${when(user.created_at)}</td>
    <td class="actions">
      <button onClick=${() => open({ kind: "edit", user })} data-testid="user-edit-open">${t("admin.users.edit")}</button>
      ${user.source !== "ldap" && html`<button onClick=${() => open({ kind: "password", user })}>${t("admin.users.reset")}</button>`}
      <${Action} class=${user.disabled ? "" : "danger"} testid="user-toggle" run=${toggle} disabled=${self}>
        ${user.disabled ? t("admin.users.enable") : t("admin.users.disable")}
      <//>
    </td>
  </tr>`;
}

export default function Users({ who }) {
  const [users, error, reload] = useAsync(() => api("/api/admin/users"), []);
  const [dialog, setDialog] = useState(null);
  const [filter, setFilter] = useState("");
  const [ask, confirmDialog] = useConfirm();
  const done = () => {
    setDialog(null);
    reload();
  };
  const shown = (users?.data || []).filter((u) => u.name.toLowerCase().includes(filter.trim().toLowerCase()));
  const title = dialog?.kind === "create" ? t("admin.users.new")
    : dialog?.kind === "edit" ? t("admin.users.edit.title", { name: dialog.user.name })
    : dialog ? t("admin.users.reset.title", { name: dialog.user.name }) : "";
  return html`<main class="page admin">
    <${PageHead} title=${t("admin.nav.users")}>
      <input type="search" class="filter" placeholder=${t("admin.users.filter")} aria-label=${t("admin.users.filter")} value=${filter} onInput=${(e) => setFilter(e.target.value)} />
      <button class="primary" data-testid="user-new" onClick=${() => setDialog({ kind: "create" })}>${t("admin.users.new")}</button>
    <//>
    ${!users
      ? html`<${Loading} error=${error} retry=${reload} />`
      : html`<div class="card table-wrap">
          <table class="cards-on-phone" data-testid="user-table">
            <thead>
              <tr>
                <th>${t("admin.users.name")}</th>
                <th>${t("admin.users.role")}</th>
                <th>${t("admin.users.status")}</th>
                <th>${t("admin.models.short")}</th>
                <th>${t("admin.limits")}</th>
                <th>${t("admin.users.created")}</th>
                <th></th>
              </tr>
            </thead>
            <tbody>
              ${shown.map((user) => html`<${UserRow} key=${user.name} user=${user} self=${user.name === who.user} open=${setDialog} reload=${reload} ask=${ask} />`)}
            </tbody>
          </table>
        </div>`}
    <${Dialog} open=${dialog !== null} onClose=${() => setDialog(null)} title=${title}>
      ${dialog?.kind === "create" && html`<${CreateUser} onDone=${done} />`}
      ${dialog?.kind === "edit" && html`<${EditUser} user=${dialog.user} onDone=${done} />`}
      ${dialog?.kind === "password" && html`<${ResetPassword} user=${dialog.user} onDone=${done} />`}
    <//>
    ${confirmDialog}
  </main>`;
}
