// The Knowledge page (#/kb): the knowledge bases assistants search, and one of them
// (#/kb/NAME) with its documents, uploads and a search to try. Everyone may read and
// search; changing knowledge bases is for administrators (the gateway's rule kb_writer),
// so the others see no controls that change anything, and a refusal is shown if it comes.
import { html, useState } from "../vendor/preact.js";
import { api } from "../core/api.js";
import { number, t, when } from "../core/i18n.js";
import { go } from "../core/shell.js";
import { Action, Dialog, Loading, toast, useAsync } from "../core/ui.js";
import { Uploads } from "./kb_files.js";
import { SearchPanel } from "./kb_search.js";
import { Empty, bytes } from "./workspace.js";

const path = (name, rest = "") => `/api/kb/${encodeURIComponent(name)}${rest}`;
const facts = (parts) => parts.join(" · ");
const counts = (kb) =>
  facts([t("kb.count.documents", { n: number(kb.documents) }), t("kb.count.chunks", { n: number(kb.chunks) })]);

function CreateDialog({ open, onClose, onMade }) {
  const [name, setName] = useState("");
  const [description, setDescription] = useState("");
  const [error, setError] = useState("");
  const [busy, setBusy] = useState(false);
  const submit = async (event) => {
    event.preventDefault();
    setBusy(true);
    setError("");
    try {
      const made = await api("/api/kb", { method: "POST", json: { name: name.trim(), description } });
      setName("");
      setDescription("");
      onMade(made);
    } catch (failure) {
      setError(failure.message);
    } finally {
      setBusy(false);
    }
  };
  return html`<${Dialog} open=${open} onClose=${onClose} title=${t("kb.create.title")}>
    <form class="stack" onSubmit=${submit} data-testid="kb-create-form">
      <label
        >${t("kb.create.name")}
        <input
          data-testid="kb-create-name"
          required
          maxlength="64"
          autofocus
          value=${name}
          onInput=${(e) => setName(e.target.value)}
      /></label>
      <p class="muted small">${t("kb.create.nameHint")}</p>
      <label
        >${t("kb.create.description")}
        <textarea rows="3" maxlength="2000" value=${description} onInput=${(e) => setDescription(e.target.value)}></textarea>
      </label>
      ${error && html`<p class="error" role="alert" data-testid="kb-create-error">${error}</p>`}
      <div class="row">
        <span class="spacer"></span>
        <button type="button" onClick=${onClose}>${t("app.cancel")}</button>
        <button class="primary" data-testid="kb-create-submit" disabled=${busy || !name.trim()}>
          ${t("kb.create.submit")}
        </button>
      </div>
    </form>
  <//>`;
}

function KbCard({ kb }) {
  return html`<li>
    <a class="card ws-kb" href=${`#/kb/${encodeURIComponent(kb.name)}`} data-testid="kb-item" data-name=${kb.name}>
      <strong class="ws-kb-name">${kb.name}</strong>
      ${kb.description && html`<span class="ws-kb-desc">${kb.description}</span>`}
      <span class="muted small">${facts([counts(kb), t("kb.updated", { when: when(kb.updated_at) })])}</span>
    </a>
  </li>`;
}

function KbList({ writer }) {
  const [list, error, reload] = useAsync(() => api("/api/kb"), []);
  const [creating, setCreating] = useState(false);
  const made = (kb) => {
    setCreating(false);
    toast(t("kb.create.done", { name: kb.name }));
    go("kb", kb.name);
  };
  return html`<main class="page narrow ws-page" data-testid="kb-page">
    <div class="row ws-title">
      <h1>${t("kb.title")}</h1>
      <span class="spacer"></span>
      ${writer &&
      html`<button class="primary" data-testid="kb-create" onClick=${() => setCreating(true)}>
        ${t("kb.create.open")}
      </button>`}
    </div>
    <p class="muted">${t("kb.intro")}</p>
    ${!list
      ? html`<${Loading} error=${error} retry=${reload} />`
      : list.data.length
        ? html`<ul class="ws-kbs" data-testid="kb-list">${list.data.map((kb) => html`<${KbCard} key=${kb.name} kb=${kb} />`)}</ul>`
        : html`<${Empty} title=${t("kb.empty.title")} testid="kb-empty">
            <p>${t("kb.empty.body")}</p>
            <p class="muted">${writer ? t("kb.empty.writer") : t("kb.empty.reader")}</p>
          <//>`}
    ${writer && html`<${CreateDialog} open=${creating} onClose=${() => setCreating(false)} onMade=${made} />`}
  </main>`;
}

function Documents({ kb, docs, writer, reload }) {
  if (!docs.length) return html`<p class="muted" data-testid="kb-no-docs">${t("kb.docs.none")}</p>`;
  const remove = async (doc) => {
    await api(path(kb, `/documents/${encodeURIComponent(doc.source)}`), { method: "DELETE" });
    toast(t("kb.docs.deleted", { name: doc.name }));
    reload();
  };
  return html`<div class="table-wrap">
    <table class="ws-docs" data-testid="kb-docs">
      <thead>
        <tr>
          <th>${t("kb.docs.name")}</th>
          <th>${t("kb.docs.kind")}</th>
          <th class="num">${t("kb.docs.size")}</th>
          <th class="num">${t("kb.docs.chunks")}</th>
          <th>${t("kb.docs.added")}</th>
          ${writer && html`<th><span class="hidden-label">${t("app.delete")}</span></th>`}
        </tr>
      </thead>
      <tbody>
        ${docs.map(
          (doc) => html`<tr key=${doc.source} data-testid="kb-doc" data-source=${doc.source}>
            <td class="ws-doc-name" title=${doc.source}>${doc.name}</td>
            <td><span class="badge">${doc.kind}</span></td>
            <td class="num">${bytes(doc.size)}</td>
            <td class="num">${number(doc.chunks)}</td>
            <td class="small">${when(doc.added_at)}</td>
            ${writer &&
            html`<td>
              <${Action}
                class="icon danger"
                testid="kb-doc-delete"
                title=${t("kb.docs.delete", { name: doc.name })}
                confirm=${t("kb.docs.confirm", { name: doc.name })}
                run=${() => remove(doc)}
                >✕<//
              >
            </td>`}
          </tr>`,
        )}
      </tbody>
    </table>
  </div>`;
}

function KbDetail({ name, writer }) {
  const [kb, error, reload] = useAsync(() => api(path(name)), [name]);
  if (!kb) {
    return html`<main class="page narrow ws-page">
      <a href="#/kb" class="ws-back">← ${t("kb.back")}</a>
      <${Loading} error=${error} retry=${reload} />
    </main>`;
  }
  const removeKb = async () => {
    await api(path(name), { method: "DELETE" });
    toast(t("kb.deleted", { name }));
    go("kb");
  };
  return html`<main class="page narrow ws-page" data-testid="kb-detail" data-name=${name}>
    <a href="#/kb" class="ws-back" data-testid="kb-back">← ${t("kb.back")}</a>
    <div class="row ws-title">
      <h1>${kb.name}</h1>
      <span class="spacer"></span>
      ${writer &&
      html`<${Action}
        class="danger"
        testid="kb-delete"
        confirm=${t("kb.confirmDelete", { name })}
        run=${removeKb}
        >${t("kb.delete")}<//
      >`}
    </div>
    ${kb.description && html`<p>${kb.description}</p>`}
    <p class="muted small ws-facts" data-testid="kb-facts">
      ${facts([
        counts(kb),
        t("kb.model", { model: kb.embedding_model, dims: kb.dims }),
        t("kb.chunking", { size: kb.chunk_size, overlap: kb.chunk_overlap }),
      ])}
    </p>
    ${writer ? html`<${Uploads} kb=${name} onFinished=${reload} />` : html`<p class="muted small" data-testid="kb-read-only">${t("kb.readOnly")}</p>`}
    <section class="card ws-section" aria-labelledby="kb-docs-title">
      <h2 id="kb-docs-title">${t("kb.docs.title")}</h2>
      <${Documents} kb=${name} docs=${kb.data} writer=${writer} reload=${reload} />
    </section>
    <${SearchPanel} kb=${name} />
  </main>`;
}

export default function KnowledgePage({ who, route }) {
  const writer = who.role === "admin";
  return route[1] ? html`<${KbDetail} key=${route[1]} name=${route[1]} writer=${writer} />` : html`<${KbList} writer=${writer} />`;
}
