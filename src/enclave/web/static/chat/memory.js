// "What do you remember about me" (#/memory): the signed-in user's own memories, the
// facts and preferences assistants keep; delete one, or forget everything. The recent
// conversation turns and the archive are shown read-only (#/memory/recent, /archive).
import { html, useEffect, useState } from "../vendor/preact.js";
import { api } from "../core/api.js";
import { t, when } from "../core/i18n.js";
import { go } from "../core/shell.js";
import { Action, Loading, toast, useAsync, useDebounced } from "../core/ui.js";
import { Empty } from "./workspace.js";

const PAGE = 50;
const TABS = ["memories", "recent", "archive"];
const SOURCES = ["api", "cli", "extracted", "restored"]; // how a memory came (enclave.memory)

const sourceOf = (source) =>
  SOURCES.includes(source) ? t("memory.source." + source) : t("memory.source", { source });

function Dates({ item }) {
  return html`<span class="muted small ws-dates">
    ${t("memory.created", { when: when(item.created_at) })}
    ${item.updated_at && item.updated_at !== item.created_at && html` · ${t("memory.updated", { when: when(item.updated_at) })}`}
    ${item.last_used_at && html` · ${t("memory.used", { when: when(item.last_used_at) })}`}
    ${item.archived_at && html` · ${t("memory.archivedAt", { when: when(item.archived_at) })}`}
  </span>`;
}

function MemoryItem({ item, onDelete }) {
  return html`<li class="card ws-memory" data-testid="memory-item" data-id=${item.id}>
    <p class="ws-memory-text" data-testid="memory-text">${item.text}</p>
    <div class="row">
      <span class="badge">${t("memory.kind." + item.kind)}</span>
      ${item.source && html`<span class="badge">${sourceOf(item.source)}</span>`}
      ${item.score !== undefined && html`<span class="badge">${t("memory.score", { score: item.score.toFixed(2) })}</span>`}
      <${Dates} item=${item} />
      <span class="spacer"></span>
      ${onDelete &&
      html`<${Action} class="danger" testid="memory-delete" title=${t("memory.delete")} run=${() => onDelete(item)}>
        ${t("app.delete")}
      <//>`}
    </div>
  </li>`;
}

// The long-term memories, a page at a time, or those found by meaning for a search.
function Memories() {
  const [query, setQuery] = useState("");
  const [kind, setKind] = useState("");
  const wanted = useDebounced(query.trim(), 300);
  const [rows, setRows] = useState(null);
  const [more, setMore] = useState(false);
  const [error, setError] = useState(null);
  const load = async (offset) => {
    try {
      const found = wanted
        ? await api("/api/memories", { query: { q: wanted, k: 20 } })
        : await api("/api/memories", { query: { limit: PAGE, offset } });
      // A memory added meanwhile shifts the pages by one: keep each memory once.
      const more = (old) => [...old, ...found.data.filter((row) => !old.some((kept) => kept.id === row.id))];
      setRows((old) => (offset && old ? more(old) : found.data));
      setMore(!wanted && found.data.length === PAGE);
      setError(null);
    } catch (failure) {
      setError(failure);
    }
  };
  useEffect(() => {
    load(0);
  }, [wanted]);
  const remove = async (item) => {
    await api(`/api/memories/${item.id}`, { method: "DELETE" });
    setRows((old) => old.filter((row) => row.id !== item.id));
    toast(t("memory.deleted"));
  };
  if (rows === null) return html`<${Loading} error=${error} retry=${() => load(0)} />`;
  const shown = kind ? rows.filter((row) => row.kind === kind) : rows;
  if (!rows.length && !wanted) {
    return html`<${Empty} title=${t("memory.empty.title")} testid="memory-empty">
      <p>${t("memory.empty.body")}</p>
      <p class="muted">${t("memory.empty.how")}</p>
    <//>`;
  }
  return html`<div class="row ws-tools">
      <input
        type="search"
        data-testid="memory-search"
        aria-label=${t("memory.search")}
        placeholder=${t("memory.search")}
        value=${query}
        onInput=${(e) => setQuery(e.target.value)}
      />
      <select aria-label=${t("memory.kind")} value=${kind} onChange=${(e) => setKind(e.target.value)}>
        <option value="">${t("memory.kind.all")}</option>
        <option value="fact">${t("memory.kind.fact")}</option>
        <option value="preference">${t("memory.kind.preference")}</option>
      </select>
    </div>
    ${error && html`<${Loading} error=${error} />`}
    ${shown.length
      ? html`<ul class="ws-memories" data-testid="memory-list">
          ${shown.map((item) => html`<${MemoryItem} key=${item.id} item=${item} onDelete=${remove} />`)}
        </ul>`
      : html`<p class="muted" data-testid="memory-none">${t("memory.none")}</p>`}
    ${more && html`<button class="link" data-testid="memory-more" onClick=${() => load(rows.length)}>${t("app.more")}</button>`}`;
}

function Recent() {
  const [turns, error, reload] = useAsync(() => api("/api/memories/recent", { query: { limit: 50 } }), []);
  if (!turns) return html`<${Loading} error=${error} retry=${reload} />`;
  if (!turns.data.length) return html`<p class="muted" data-testid="memory-none">${t("memory.recent.none")}</p>`;
  return html`<ul class="ws-memories" data-testid="memory-recent">
    ${turns.data.map(
      (turn) => html`<li key=${turn.id} class="card ws-memory ws-turn">
        <span class="badge">${t("memory.role." + turn.role)}</span>
        <p class="ws-memory-text">${turn.content}</p>
        <span class="muted small">${when(turn.created_at)}</span>
      </li>`,
    )}
  </ul>`;
}

function Archive() {
  const [items, error, reload] = useAsync(() => api("/api/memories/archive"), []);
  if (!items) return html`<${Loading} error=${error} retry=${reload} />`;
  if (!items.data.length) return html`<p class="muted" data-testid="memory-none">${t("memory.archive.none")}</p>`;
  return html`<ul class="ws-memories" data-testid="memory-archive">
    ${items.data.map((item) => html`<${MemoryItem} key=${item.id} item=${item} />`)}
  </ul>`;
}

export default function MemoryPage({ route }) {
  const tab = TABS.includes(route[1]) ? route[1] : "memories";
  const [epoch, setEpoch] = useState(0); // a new one after "forget everything": reload
  // Everything of the user goes: memories, recent turns and the archive.
  const forget = async () => {
    const done = await api("/api/memories", { method: "DELETE" });
    const n = Object.values(done.erased || {}).reduce((a, b) => a + b, 0);
    setEpoch(epoch + 1);
    toast(t("memory.forgotten", { n }));
  };
  return html`<main class="page narrow ws-page" data-testid="memory-page">
    <div class="row ws-title">
      <h1>${t("memory.title")}</h1>
      <span class="spacer"></span>
      <${Action} class="danger" testid="memory-forget-all" confirm=${t("memory.forgetConfirm")} run=${forget}>
        ${t("memory.forgetAll")}
      <//>
    </div>
    <p class="muted">${t("memory.intro")}</p>
    <div class="ws-tabs" role="tablist">
      ${TABS.map(
        (id) => html`<button
          role="tab"
          class=${id === tab ? "current" : ""}
          aria-selected=${id === tab}
          data-testid=${`memory-tab-${id}`}
          onClick=${() => (id === "memories" ? go("memory") : go("memory", id))}
        >
          ${t("memory.tab." + id)}
        </button>`,
      )}
    </div>
    <p class="muted small">${t("memory.tabHint." + tab)}</p>
    ${tab === "recent"
      ? html`<${Recent} key=${epoch} />`
      : tab === "archive"
        ? html`<${Archive} key=${epoch} />`
        : html`<${Memories} key=${epoch} />`}
  </main>`;
}
