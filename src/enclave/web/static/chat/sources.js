// The side panel of one citation: its document, section, knowledge base, score and the
// cited passage. A citation names its chunk (kb, source, heading) but does not carry the
// text (src/enclave/assistants/prompt.py, Source.citation), so the passage is found again
// with the knowledge base's search (POST /api/kb/{kb}/search) for the question that was
// answered, and the hit of the same document and section is shown. A citation that does
// carry text (`text` or `snippet`) shows it without asking.
import { html, useEffect, useRef, useState } from "../vendor/preact.js";
import { api } from "../core/api.js";
import { t } from "../core/i18n.js";

const SEARCH_K = 20;

async function passage(citation, question) {
  const given = citation.text || citation.snippet;
  if (given) return given;
  if (!citation.kb || !question.trim()) return null;
  const found = await api(`/api/kb/${encodeURIComponent(citation.kb)}/search`, {
    method: "POST",
    json: { query: question.slice(0, 8000), k: SEARCH_K },
  });
  const same = (hit) => hit.source === citation.source || hit.document === citation.document;
  const hit =
    found.data.find((h) => same(h) && (h.heading || "") === (citation.heading || "")) || found.data.find(same);
  return hit ? hit.text : null;
}

export function SourcePanel({ open, onClose }) {
  const [state, setState] = useState({ text: undefined, error: null });
  const ref = useRef(null);
  useEffect(() => {
    if (!open) return undefined;
    let live = true;
    setState({ text: undefined, error: null });
    passage(open.citation, open.question).then(
      (text) => live && setState({ text, error: null }),
      (error) => live && setState({ text: null, error }),
    );
    ref.current?.focus();
    return () => {
      live = false;
    };
  }, [open]);
  if (!open) return null;
  const { citation } = open;
  return html`<aside class="source-panel" data-testid="source-panel" aria-label=${t("chat.source.title")} tabindex="-1" ref=${ref}>
    <header>
      <h2>${t("chat.source.title")} [${citation.index}]</h2>
      <button class="icon" onClick=${onClose} aria-label=${t("app.close")}>✕</button>
    </header>
    <dl>
      <dt>${t("chat.source.document")}</dt>
      <dd data-testid="source-document">${citation.document || citation.source}</dd>
      ${citation.heading && html`<dt>${t("chat.source.section")}</dt><dd>${citation.heading}</dd>`}
      ${citation.kb && html`<dt>${t("chat.source.kb")}</dt><dd>${citation.kb}</dd>`}
      ${citation.score != null && html`<dt>${t("chat.source.score")}</dt><dd data-testid="source-score">${Number(citation.score).toFixed(3)}</dd>`}
    </dl>
    <h3>${t("chat.source.passage")}</h3>
    ${state.error
      ? html`<p class="error">${t("app.error", { message: state.error.message })}</p>`
      : state.text === undefined
        ? html`<p class="muted">${t("app.loading")}</p>`
        : state.text === null
          ? html`<p class="muted">${t("chat.source.missing")}</p>`
          : html`<blockquote class="passage" data-testid="source-passage">${state.text}</blockquote>`}
  </aside>`;
}
