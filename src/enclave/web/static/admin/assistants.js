// Assistant profiles: list (GET /api/assistants), create or replace
// (PUT /api/admin/assistants/{name}), delete. A form for the common fields and a JSON editor
// for the rest; the server validates and its 400 message is shown as it is.
import { html, useState } from "../vendor/preact.js";
import { api } from "../core/api.js";
import { add, t } from "../core/i18n.js";
import { Action, Dialog, Loading, toast, useAsync } from "../core/ui.js";
import { PageHead, listOf, useConfirm, useForm } from "./common.js";

add({
  en: {
    "admin.asst.new": "New assistant",
    "admin.asst.name": "Name",
    "admin.asst.name.hint": "lower case letters, digits, . _ -; used as assistant/NAME",
    "admin.asst.model": "Model",
    "admin.asst.description": "Description",
    "admin.asst.prompt": "System prompt",
    "admin.asst.knowledge": "Knowledge bases (comma-separated)",
    "admin.asst.memory": "Memory",
    "admin.asst.memory.user": "the user's",
    "admin.asst.memory.conversation": "this conversation's",
    "admin.asst.memory.off": "off",
    "admin.asst.citations": "Citations",
    "admin.asst.more": "Other settings (JSON)",
    "admin.asst.more.hint": "retrieval, memories, recent, history, extract, defaults (sampling)…",
    "admin.asst.json.bad": "The JSON is not valid: {message}",
    "admin.asst.source": "Source",
    "admin.asst.source.config": "config file",
    "admin.asst.source.api": "console / API",
    "admin.asst.readonly": "Defined in the config file: change it there.",
    "admin.asst.edit": "Edit",
    "admin.asst.view": "View",
    "admin.asst.delete.confirm": "Delete the assistant {name}? Its conversations stay stored.",
    "admin.asst.saved": "Assistant {name} saved",
    "admin.asst.deleted": "Assistant {name} deleted",
    "admin.asst.none": "No assistants yet.",
    "admin.asst.kb": "Knowledge",
  },
  zh: {
    "admin.asst.new": "新建助手",
    "admin.asst.name": "名称",
    "admin.asst.name.hint": "小写字母、数字、. _ -；对外名称为 assistant/名称",
    "admin.asst.model": "模型",
    "admin.asst.description": "描述",
    "admin.asst.prompt": "系统提示词",
    "admin.asst.knowledge": "知识库（逗号分隔）",
    "admin.asst.memory": "记忆",
    "admin.asst.memory.user": "用户级",
    "admin.asst.memory.conversation": "对话级",
    "admin.asst.memory.off": "关闭",
    "admin.asst.citations": "引用",
    "admin.asst.more": "其他设置（JSON）",
    "admin.asst.more.hint": "retrieval、memories、recent、history、extract、defaults（采样参数）…",
    "admin.asst.json.bad": "JSON 格式有误：{message}",
    "admin.asst.source": "来源",
    "admin.asst.source.config": "配置文件",
    "admin.asst.source.api": "控制台 / API",
    "admin.asst.readonly": "此助手在配置文件中定义，请在配置文件中修改。",
    "admin.asst.edit": "编辑",
    "admin.asst.view": "查看",
    "admin.asst.delete.confirm": "删除助手 {name}？其对话记录会保留。",
    "admin.asst.saved": "已保存助手 {name}",
    "admin.asst.deleted": "已删除助手 {name}",
    "admin.asst.none": "还没有助手。",
    "admin.asst.kb": "知识库",
  },
});

const COMMON = ["name", "model", "description", "system_prompt", "knowledge", "memory", "citations"];
const MEMORY = ["user", "conversation", "off"];
const CITATIONS = ["markers", "field", "none"];
const EXTRA_DEFAULTS = { memories: 5, recent: 6, history: 20, extract: true, retrieval: { top_k: 4, min_score: 0, mode: "hybrid" }, defaults: {} };

function splitProfile(profile) {
  const rest = {};
  for (const [key, value] of Object.entries(profile || {})) {
    if (!COMMON.includes(key) && key !== "id" && key !== "source") rest[key] = value;
  }
  return JSON.stringify(profile ? rest : EXTRA_DEFAULTS, null, 2);
}

function ProfileForm({ profile, models, onDone }) {
  const readonly = profile?.source === "config";
  const [form, set] = useForm({
    name: profile?.name || "",
    model: profile?.model || models[0] || "",
    description: profile?.description || "",
    system_prompt: profile?.system_prompt ?? "You are a helpful assistant.",
    knowledge: (profile?.knowledge || []).join(", "),
    memory: profile?.memory || "user",
    citations: profile?.citations || "markers",
    extra: splitProfile(profile),
  });
  const [problem, setProblem] = useState("");
  const submit = async () => {
    setProblem("");
    let extra;
    try {
      extra = JSON.parse(form.extra || "{}");
    } catch (error) {
      setProblem(t("admin.asst.json.bad", { message: error.message }));
      return;
    }
    const body = {
      ...extra,
      name: form.name.trim(),
      model: form.model.trim(),
      description: form.description,
      system_prompt: form.system_prompt,
      knowledge: listOf(form.knowledge),
      memory: form.memory,
      citations: form.citations,
    };
    try {
      await api(`/api/admin/assistants/${encodeURIComponent(body.name)}`, { method: "PUT", json: body });
    } catch (error) {
      if (error.status !== 400 && error.status !== 422) throw error;
      setProblem(error.message);
      return;
    }
    toast(t("admin.asst.saved", { name: body.name }));
    onDone();
  };
  const bind = (name) => ({ name, value: form[name], disabled: readonly, onInput: (e) => set(name, e.target.value) });
  return html`<form class="stack" data-testid="assistant-form" onSubmit=${(e) => e.preventDefault()}>
    ${readonly && html`<p class="notice warn">${t("admin.asst.readonly")}</p>`}
    <div class="grid2">
      <label>${t("admin.asst.name")}<input ...${bind("name")} required disabled=${readonly || !!profile} title=${t("admin.asst.name.hint")} /></label>
      <label
        >${t("admin.asst.model")}<input ...${bind("model")} required list="assistant-models" />
        <datalist id="assistant-models">${models.map((m) => html`<option value=${m} />`)}</datalist>
      </label>
    </div>
    <label>${t("admin.asst.description")}<input ...${bind("description")} /></label>
    <label>${t("admin.asst.prompt")}<textarea rows="4" ...${bind("system_prompt")}></textarea></label>
    <label>${t("admin.asst.knowledge")}<input ...${bind("knowledge")} /></label>
    <div class="grid2">
      <label
        >${t("admin.asst.memory")}
        <select name="memory" value=${form.memory} disabled=${readonly} onChange=${(e) => set("memory", e.target.value)}>
          ${MEMORY.map((m) => html`<option value=${m}>${t(`admin.asst.memory.${m}`)}</option>`)}
        </select></label
      >
      <label
        >${t("admin.asst.citations")}
        <select name="citations" value=${form.citations} disabled=${readonly} onChange=${(e) => set("citations", e.target.value)}>
          ${CITATIONS.map((c) => html`<option value=${c}>${c}</option>`)}
        </select></label
      >
    </div>
    <label
      >${t("admin.asst.more")} <span class="small">${t("admin.asst.more.hint")}</span>
      <textarea class="code" rows="10" spellcheck="false" data-testid="assistant-json" ...${bind("extra")}></textarea>
    </label>
    ${problem && html`<p class="notice error" role="alert" data-testid="assistant-error">${problem}</p>`}
    ${!readonly &&
    html`<div class="row end">
      <${Action} class="primary" testid="assistant-save" run=${submit} disabled=${!form.name.trim() || !form.model.trim()}>${t("app.save")}<//>
    </div>`}
  </form>`;
}

export default function Assistants() {
  const [found, error, reload] = useAsync(() => api("/api/assistants"), []);
  const [models] = useAsync(() => api("/v1/models").then((r) => r.data.map((m) => m.id).filter((id) => !id.startsWith("assistant/"))), []);
  const [dialog, setDialog] = useState(null);
  const [ask, confirmDialog] = useConfirm();
  const remove = async (profile) => {
    if (!(await ask(t("admin.asst.delete.confirm", { name: profile.name })))) return;
    await api(`/api/admin/assistants/${encodeURIComponent(profile.name)}`, { method: "DELETE" });
    toast(t("admin.asst.deleted", { name: profile.name }));
    reload();
  };
  const list = found?.data || [];
  return html`<main class="page admin">
    <${PageHead} title=${t("admin.nav.assistants")}>
      <button class="primary" data-testid="assistant-new" onClick=${() => setDialog({ profile: null })}>${t("admin.asst.new")}</button>
    <//>
    ${!found
      ? html`<${Loading} error=${error} retry=${reload} />`
      : html`<div class="tiles">
          ${list.map(
            (p) => html`<article class="card tile" data-testid="assistant-card" data-name=${p.name} key=${p.name}>
              <div class="row">
                <h2>${p.name}</h2>
                <span class="badge">${t(`admin.asst.source.${p.source}`)}</span>
              </div>
              <p class="muted small">${p.description || p.system_prompt.slice(0, 140)}</p>
              <dl class="facts small">
                <dt>${t("admin.asst.model")}</dt><dd><code>${p.model}</code></dd>
                <dt>${t("admin.asst.memory")}</dt><dd>${t(`admin.asst.memory.${p.memory}`)}</dd>
                ${p.knowledge.length > 0 && html`<dt>${t("admin.asst.kb")}</dt><dd>${p.knowledge.join(", ")}</dd>`}
              </dl>
              <div class="row end">
                <button onClick=${() => setDialog({ profile: p })} data-testid="assistant-edit">
                  ${p.source === "config" ? t("admin.asst.view") : t("admin.asst.edit")}
                </button>
                ${p.source !== "config" && html`<${Action} class="danger" run=${() => remove(p)} testid="assistant-delete">${t("app.delete")}<//>`}
              </div>
            </article>`,
          )}
          ${!list.length && html`<p class="muted">${t("admin.asst.none")}</p>`}
        </div>`}
    <${Dialog} wide open=${dialog !== null} onClose=${() => setDialog(null)} title=${dialog?.profile ? dialog.profile.id : t("admin.asst.new")}>
      ${dialog &&
      html`<${ProfileForm}
        profile=${dialog.profile}
        models=${models || []}
        onDone=${() => {
          setDialog(null);
          reload();
        }}
      />`}
    <//>
    ${confirmDialog}
  </main>`;
}
