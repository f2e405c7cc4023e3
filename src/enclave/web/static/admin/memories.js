// Memories per user: pick a user, see what the assistants remember about them
// (GET /api/memories?user=NAME), delete one, or erase everything of that user.
import { html, useState } from "../vendor/preact.js";
import { api } from "../core/api.js";
import { add, number, t, when } from "../core/i18n.js";
import { Action, Loading, toast, useAsync } from "../core/ui.js";
import { PageHead, useConfirm } from "./common.js";

add({
  en: {
    "admin.mem.user": "User",
    "admin.mem.pick": "Pick a user to see their memories.",
    "admin.mem.text": "Memory",
    "admin.mem.kind": "Kind",
    "admin.mem.source": "Source",
    "admin.mem.created": "Created",
    "admin.mem.used": "Last used",
    "admin.mem.count": "{n} memories",
    "admin.mem.erase": "Erase all of {name}",
    "admin.mem.erase.confirm": "Erase everything the assistants remember about {name}: memories, recent turns and the archive? This cannot be undone.",
    "admin.mem.erased": "Erased for {name}: {what}",
    "admin.mem.delete.confirm": "Delete this memory of {name}? “{text}”",
    "admin.mem.deleted": "Memory deleted",
    "admin.mem.none": "The assistants remember nothing about {name}.",
    "admin.mem.more": "Showing the newest {n}.",
  },
  zh: {
    "admin.mem.user": "用户",
    "admin.mem.pick": "选择一个用户以查看其记忆。",
    "admin.mem.text": "记忆内容",
    "admin.mem.kind": "类型",
    "admin.mem.source": "来源",
    "admin.mem.created": "创建时间",
    "admin.mem.used": "最近使用",
    "admin.mem.count": "共 {n} 条记忆",
    "admin.mem.erase": "清除 {name} 的全部记忆",
    "admin.mem.erase.confirm": "清除助手关于 {name} 的全部记忆（包括记忆、近期对话和归档）？此操作无法撤销。",
    "admin.mem.erased": "已清除 {name} 的数据：{what}",
    "admin.mem.delete.confirm": "删除 {name} 的这条记忆？“{text}”",
    "admin.mem.deleted": "记忆已删除",
    "admin.mem.none": "助手没有关于 {name} 的任何记忆。",
    "admin.mem.more": "仅显示最新的 {n} 条。",
  },
});

const LIMIT = 500;

function List({ user, ask }) {
  const [found, error, reload] = useAsync(() => api("/api/memories", { query: { user, limit: LIMIT } }), [user]);
  const erase = async () => {
    if (!(await ask(t("admin.mem.erase.confirm", { name: user })))) return;
    const done = await api("/api/memories", { method: "DELETE", query: { user } });
    const what = Object.entries(done.erased || {}).map(([k, v]) => `${k} ${v}`).join(", ");
    toast(t("admin.mem.erased", { name: user, what }));
    reload();
  };
  const remove = async (memory) => {
    if (!(await ask(t("admin.mem.delete.confirm", { name: user, text: memory.text.slice(0, 80) })))) return;
    await api(`/api/memories/${memory.id}`, { method: "DELETE", query: { user } });
    toast(t("admin.mem.deleted"));
    reload();
  };
  if (!found) return html`<${Loading} error=${error} retry=${reload} />`;
  const rows = found.data;
  return html`<div class="stack">
    <div class="row">
      <span class="muted" data-testid="memory-count">${t("admin.mem.count", { n: number(rows.length) })}</span>
      ${rows.length >= LIMIT && html`<span class="muted small">${t("admin.mem.more", { n: LIMIT })}</span>`}
      <span class="spacer"></span>
      <${Action} class="danger" testid="memory-erase" run=${erase}>${t("admin.mem.erase", { name: user })}<//>
    </div>
    ${rows.length
      ? html`<div class="card table-wrap">
          <table class="cards-on-phone" data-testid="memory-table">
            <thead>
              <tr>
                <th>${t("admin.mem.text")}</th>
                <th>${t("admin.mem.kind")}</th>
                <th>${t("admin.mem.source")}</th>
                <th>${t("admin.mem.created")}</th>
                <th>${t("admin.mem.used")}</th>
                <th></th>
              </tr>
            </thead>
            <tbody>
              ${rows.map(
                (m) => html`<tr key=${m.id} data-testid="memory-row">
                  <td class="wrap">${m.text}</td>
                  <td data-label=${t("admin.mem.kind")}><span class="badge">${m.kind}</span></td>
                  <td data-label=${t("admin.mem.source")} class="small muted">${m.source}</td>
                  <td data-label=${t("admin.mem.created")} class="small muted">${when(m.created_at)}</td>
                  <td data-label=${t("admin.mem.used")} class="small muted">${m.last_used_at ? when(m.last_used_at) : "–"}</td>
                  <td class="actions"><${Action} class="danger" testid="memory-delete" run=${() => remove(m)}>${t("app.delete")}<//></td>
                </tr>`,
              )}
            </tbody>
          </table>
        </div>`
      : html`<p class="muted">${t("admin.mem.none", { name: user })}</p>`}
  </div>`;
}

export default function Memories() {
  const [users, error, reload] = useAsync(() => api("/api/admin/users"), []);
  const [user, setUser] = useState("");
  const [ask, confirmDialog] = useConfirm();
  return html`<main class="page admin">
    <${PageHead} title=${t("admin.nav.memories")}>
      <select data-testid="memory-user" aria-label=${t("admin.mem.user")} value=${user} onChange=${(e) => setUser(e.target.value)}>
        <option value="">${t("admin.mem.user")}…</option>
        ${(users?.data || []).map((u) => html`<option value=${u.name}>${u.name}</option>`)}
      </select>
    <//>
    ${!users && html`<${Loading} error=${error} retry=${reload} />`}
    ${user ? html`<${List} key=${user} user=${user} ask=${ask} />` : html`<p class="muted">${t("admin.mem.pick")}</p>`}
    ${confirmDialog}
  </main>`;
}
