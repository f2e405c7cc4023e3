// "Try a search" in one knowledge base: the chunks an assistant would be given for a
// query, best first, with their score and the query's words marked.
import { html, useState } from "../vendor/preact.js";
import { api } from "../core/api.js";
import { t } from "../core/i18n.js";
import { Highlight, termsOf } from "./workspace.js";

const MODES = ["hybrid", "vector", "keyword"];

function Hit({ hit, terms }) {
  return html`<li class="ws-hit" data-testid="kb-hit">
    <div class="ws-hit-head">
      <span class="ws-score" data-testid="kb-hit-score" title=${t("kb.search.score")}>${hit.score.toFixed(3)}</span>
      <strong class="ws-doc">${hit.document}</strong>
      ${hit.heading && html`<span class="muted">› ${hit.heading}</span>`}
      <span class="spacer"></span>
      <span class="muted small">${t("kb.search.chunk", { n: hit.ord + 1 })}</span>
    </div>
    <p class="ws-hit-text" data-testid="kb-hit-text"><${Highlight} text=${hit.text} terms=${terms} /></p>
  </li>`;
}

export function SearchPanel({ kb }) {
  const [query, setQuery] = useState("");
  const [mode, setMode] = useState("hybrid");
  const [k, setK] = useState(5);
  const [state, setState] = useState({ busy: false, hits: null, error: null, terms: [] });
  const submit = async (event) => {
    event.preventDefault();
    const text = query.trim();
    if (!text) return;
    setState((old) => ({ ...old, busy: true, error: null }));
    try {
      const found = await api(`/api/kb/${encodeURIComponent(kb)}/search`, {
        method: "POST",
        json: { query: text, k, mode },
      });
      setState({ busy: false, hits: found.data, error: null, terms: termsOf(text) });
    } catch (error) {
      setState({ busy: false, hits: null, error, terms: [] });
    }
  };
  return html`<section class="card ws-section" aria-labelledby="kb-search-title">
    <h2 id="kb-search-title">${t("kb.search.title")}</h2>
    <p class="muted small">${t("kb.search.hint")}</p>
    <form class="ws-search" onSubmit=${submit} role="search">
      <input
        type="search"
        data-testid="kb-search-input"
        aria-label=${t("kb.search.query")}
        placeholder=${t("kb.search.query")}
        value=${query}
        onInput=${(e) => setQuery(e.target.value)}
      />
      <select aria-label=${t("kb.search.mode")} value=${mode} onChange=${(e) => setMode(e.target.value)}>
        ${MODES.map((m) => html`<option value=${m}>${t("kb.search.mode." + m)}</option>`)}
      </select>
      <select aria-label=${t("kb.search.k")} value=${k} onChange=${(e) => setK(Number(e.target.value))}>
        ${[3, 5, 10, 20].map((n) => html`<option value=${n}>${t("kb.search.top", { n })}</option>`)}
      </select>
      <button class="primary" data-testid="kb-search-submit" disabled=${state.busy || !query.trim()}>
        ${state.busy ? t("kb.search.busy") : t("kb.search.go")}
      </button>
    </form>
    ${state.error && html`<p class="error" role="alert" data-testid="kb-search-error">${state.error.message}</p>`}
    ${state.hits &&
    (state.hits.length
      ? html`<ol class="ws-hits" data-testid="kb-hits">
          ${state.hits.map((hit) => html`<${Hit} key=${hit.chunk_id} hit=${hit} terms=${state.terms} />`)}
        </ol>`
      : html`<p class="muted" data-testid="kb-no-hits">${t("kb.search.none")}</p>`)}
  </section>`;
}
