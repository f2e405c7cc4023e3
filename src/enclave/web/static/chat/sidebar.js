// The conversation sidebar of the chat page: the caller's conversations, newest first,
// paged by the server (keyset cursor; the next page loads when the end scrolls into view),
// searched by the server (title), grouped by day; rename, export, delete; arrow keys move,
// Enter opens, F2 renames, Delete deletes.
//   <Sidebar current=${id} onOpen=${(id) => ...} onNew=${() => ...} refreshKey=${n} />
import { html, useEffect, useMemo, useRef, useState } from "../vendor/preact.js";
import { api, send } from "../core/api.js";
import { add, lang, t } from "../core/i18n.js";
import { download, toast, useDebounced } from "../core/ui.js";

const PAGE = 50;
const DAY = 86_400_000;

// --- the list, page by page ------------------------------------------------------------

function merged(fresh, old) {
  // A refresh: the new first page, then what was loaded beyond it (moved ones once).
  const seen = new Set(fresh.map((item) => item.id));
  return [...fresh, ...old.filter((item) => !seen.has(item.id))];
}

// {items, more, loading, error, loadMore, patch, drop}: pages of /api/conversations.
function useConversations(q, refreshKey) {
  const [state, setState] = useState({ items: [], cursor: null, loading: true, error: null });
  const generation = useRef(0);
  const lastQ = useRef(q);
  const busy = useRef(false);
  const [retries, setRetries] = useState(0);

  const fetchPage = (cursor) => api("/api/conversations", { query: { limit: PAGE, cursor, q } });

  useEffect(() => {
    const mine = ++generation.current;
    const sameQuery = lastQ.current === q;
    lastQ.current = q;
    busy.current = true;
    setState((old) => ({ ...old, loading: true, error: null, ...(sameQuery ? {} : { items: [] }) }));
    fetchPage(null).then(
      (page) => {
        if (mine !== generation.current) return;
        busy.current = false;
        setState((old) => {
          const keep = sameQuery && old.items.length > page.data.length;
          return {
            items: keep ? merged(page.data, old.items) : page.data,
            cursor: keep ? old.cursor : page.next_cursor,
            loading: false,
            error: null,
          };
        });
      },
      (error) => {
        if (mine !== generation.current) return;
        busy.current = false;
        setState((old) => ({ ...old, loading: false, error }));
      },
    );
  }, [q, refreshKey, retries]);

  const loadMore = () => {
    if (busy.current || !state.cursor) return;
    const mine = generation.current;
    busy.current = true;
    setState((old) => ({ ...old, loading: true }));
    fetchPage(state.cursor).then(
      (page) => {
        if (mine !== generation.current) return;
        busy.current = false;
        setState((old) => ({
          items: merged(old.items, page.data),
          cursor: page.next_cursor,
          loading: false,
          error: null,
        }));
      },
      (error) => {
        if (mine !== generation.current) return;
        busy.current = false;
        setState((old) => ({ ...old, loading: false, error }));
      },
    );
  };

  const patch = (row) =>
    setState((old) => ({ ...old, items: old.items.map((item) => (item.id === row.id ? { ...item, ...row } : item)) }));
  const drop = (id) => setState((old) => ({ ...old, items: old.items.filter((item) => item.id !== id) }));
  const retry = () => (state.cursor ? loadMore() : setRetries((n) => n + 1));
  return { ...state, more: Boolean(state.cursor), loadMore, retry, patch, drop };
}

// --- days ------------------------------------------------------------------------------

function startOfDay(date) {
  return new Date(date.getFullYear(), date.getMonth(), date.getDate()).getTime();
}

const months = {};
function groupOf(iso, today) {
  const at = new Date(iso);
  const days = Math.round((today - startOfDay(at)) / DAY);
  if (days <= 0) return t("side.today");
  if (days === 1) return t("side.yesterday");
  if (days < 7) return t("side.week");
  months[lang] ??= new Intl.DateTimeFormat(lang === "zh" ? "zh-CN" : "en", { year: "numeric", month: "long" });
  return months[lang].format(at);
}

function grouped(items) {
  const today = startOfDay(new Date());
  const groups = [];
  for (const item of items) {
    const name = groupOf(item.updated_at, today);
    if (groups.length === 0 || groups[groups.length - 1].name !== name) groups.push({ name, items: [] });
    groups[groups.length - 1].items.push(item);
  }
  return groups;
}

// --- one conversation --------------------------------------------------------------------

function fileName(item, format) {
  const base = (item.title || "conversation").replace(/[^\p{L}\p{N}]+/gu, "-").replace(/^-|-$/g, "").slice(0, 60);
  return `${base || "conversation"}.${format}`;
}

async function exportAs(item, format) {
  const response = await send(`/api/conversations/${encodeURIComponent(item.id)}/export`, { query: { format } });
  const type = format === "md" ? "text/markdown" : "application/json";
  download(fileName(item, format), await response.text(), type);
}

function Badge({ item }) {
  const assistant = item.kind === "assistant";
  const name = (item.model || item.assistant || "").replace(/^assistant\//, "");
  if (!name) return null;
  return html`<span
    class=${`badge side-badge${assistant ? " assistant" : ""}`}
    title=${`${assistant ? t("side.assistant") : t("side.model")}: ${name}`}
    >${assistant ? "◆ " : ""}${name}</span
  >`;
}

function RenameBox({ item, onDone }) {
  const [value, setValue] = useState(item.title);
  const ref = useRef(null);
  const settled = useRef(false);
  useEffect(() => {
    ref.current?.focus();
    ref.current?.select();
  }, []);
  const finish = (save) => {
    if (settled.current) return;
    settled.current = true;
    onDone(save && value.trim() && value.trim() !== item.title ? value.trim() : null);
  };
  const key = (event) => {
    event.stopPropagation(); // the list's arrow keys are not for the text box
    if (event.key === "Enter") {
      event.preventDefault();
      finish(true);
    } else if (event.key === "Escape") {
      event.preventDefault();
      finish(false);
    }
  };
  return html`<input
    ref=${ref}
    class="side-rename"
    data-testid="conversation-rename-input"
    aria-label=${t("side.rename")}
    maxlength="1000"
    value=${value}
    onInput=${(event) => setValue(event.target.value)}
    onKeyDown=${key}
    onBlur=${() => finish(true)}
  />`;
}

function Menu({ item, onClose, onRename, onDelete }) {
  const ref = useRef(null);
  useEffect(() => {
    ref.current?.querySelector("button")?.focus();
    const away = (event) => ref.current && !ref.current.contains(event.target) && onClose(false);
    document.addEventListener("pointerdown", away);
    return () => document.removeEventListener("pointerdown", away);
  }, []);
  const run = (action) => async () => {
    onClose(true);
    try {
      await action();
    } catch (error) {
      toast(error);
    }
  };
  const key = (event) => {
    event.stopPropagation();
    const buttons = [...ref.current.querySelectorAll("button")];
    const at = buttons.indexOf(document.activeElement);
    if (event.key === "Escape" || event.key === "Tab") {
      if (event.key === "Escape") event.preventDefault();
      onClose(true);
    } else if (event.key === "ArrowDown" || event.key === "ArrowUp") {
      event.preventDefault();
      const step = event.key === "ArrowDown" ? 1 : -1;
      buttons[(at + step + buttons.length) % buttons.length].focus();
    }
  };
  return html`<div class="side-menu" role="menu" ref=${ref} onKeyDown=${key}>
    <button role="menuitem" data-testid="conversation-rename" onClick=${run(onRename)}>
      ${t("side.rename")}<kbd>F2</kbd>
    </button>
    <button role="menuitem" data-testid="conversation-export-md" onClick=${run(() => exportAs(item, "md"))}>
      ${t("side.export.md")}
    </button>
    <button role="menuitem" data-testid="conversation-export-json" onClick=${run(() => exportAs(item, "json"))}>
      ${t("side.export.json")}
    </button>
    <button role="menuitem" class="danger" data-testid="conversation-delete" onClick=${run(onDelete)}>
      ${t("app.delete")}<kbd>Del</kbd>
    </button>
  </div>`;
}

function Item({ item, current, active, menu, renaming, actions }) {
  const open = () => actions.open(item.id);
  const classes = ["side-item", current ? "current" : "", menu ? "menu-open" : ""].join(" ");
  return html`<li class=${classes} data-testid="conversation-item" data-id=${item.id}>
    ${renaming
      ? html`<${RenameBox} item=${item} onDone=${(title) => actions.renamed(item, title)} />`
      : html`<button
          class="side-open"
          tabindex=${active ? 0 : -1}
          aria-current=${current ? "true" : undefined}
          title=${item.title || t("side.untitled")}
          onClick=${open}
          onFocus=${() => actions.focused(item.id)}
        >
          <span class="side-title">${item.title || t("side.untitled")}</span>
          <${Badge} item=${item} />
        </button>`}
    <button
      class="icon side-more"
      tabindex=${active ? 0 : -1}
      aria-label=${t("side.actions", { title: item.title || t("side.untitled") })}
      aria-haspopup="menu"
      aria-expanded=${menu}
      data-testid="conversation-menu"
      onClick=${() => actions.menu(menu ? null : item.id)}
    >
      ⋯
    </button>
    ${menu &&
    html`<${Menu}
      item=${item}
      onClose=${(refocus) => actions.menu(null, refocus && item.id)}
      onRename=${() => actions.rename(item.id)}
      onDelete=${() => actions.remove(item)}
    />`}
  </li>`;
}

// --- the sidebar -----------------------------------------------------------------------

export function Sidebar({ current, onOpen, onNew, refreshKey = 0 }) {
  const [text, setText] = useState("");
  const q = useDebounced(text.trim(), 250);
  const list = useConversations(q, refreshKey);
  const [active, setActive] = useState(null); // the item Tab lands on (roving focus)
  const [menuFor, setMenuFor] = useState(null);
  const [renaming, setRenaming] = useState(null);
  const listRef = useRef(null);
  const searchRef = useRef(null);
  const endRef = useRef(null);
  const loadMore = useRef(list.loadMore);
  loadMore.current = list.loadMore;

  // The next page when the end of the list comes near (200 px before it shows).
  useEffect(() => {
    const end = endRef.current;
    if (!end || !list.more) return undefined;
    const observer = new IntersectionObserver(
      (entries) => entries.some((entry) => entry.isIntersecting) && loadMore.current(),
      { root: listRef.current, rootMargin: "200px" },
    );
    observer.observe(end);
    return () => observer.disconnect();
  }, [list.more, list.loading, list.items.length]);

  const groups = useMemo(() => grouped(list.items), [list.items, lang]);
  const has = (id) => id && list.items.some((item) => item.id === id);
  const focusable = has(active) ? active : has(current) ? current : list.items[0]?.id;

  const focusItem = (id) => {
    const row = listRef.current?.querySelector(`[data-id="${CSS.escape(id)}"] .side-open`);
    row?.focus();
    row?.scrollIntoView({ block: "nearest" });
  };

  const actions = {
    open: (id) => {
      setActive(id);
      onOpen(id);
    },
    focused: setActive,
    menu: (id, refocus) => {
      setMenuFor(id);
      if (refocus) requestAnimationFrame(() => focusItem(refocus));
    },
    rename: (id) => setRenaming(id),
    renamed: async (item, title) => {
      setRenaming(null);
      requestAnimationFrame(() => focusItem(item.id));
      if (!title) return;
      try {
        list.patch(await api(`/api/conversations/${encodeURIComponent(item.id)}`, { method: "PATCH", json: { title } }));
      } catch (error) {
        toast(error);
      }
    },
    remove: async (item) => {
      if (!window.confirm(t("side.confirm.delete", { title: item.title || t("side.untitled") }))) return;
      const ids = list.items.map((row) => row.id);
      const next = ids[ids.indexOf(item.id) + 1] ?? ids[ids.indexOf(item.id) - 1];
      await api(`/api/conversations/${encodeURIComponent(item.id)}`, { method: "DELETE" });
      list.drop(item.id);
      toast(t("side.deleted"));
      if (next) requestAnimationFrame(() => focusItem(next));
      if (item.id === current) onNew();
    },
  };

  const keys = (event) => {
    const ids = list.items.map((item) => item.id);
    const at = ids.indexOf(focusable);
    const item = list.items[at];
    const move = (index) => {
      event.preventDefault();
      if (index < 0) searchRef.current?.focus();
      else if (index < ids.length) focusItem(ids[index]);
    };
    const act = (run) => {
      event.preventDefault();
      if (item) run(item);
    };
    const handlers = {
      ArrowDown: () => move(at + 1),
      ArrowUp: () => move(at - 1),
      Home: () => move(0),
      End: () => move(ids.length - 1),
      F2: () => act((row) => setRenaming(row.id)),
      Delete: () => act((row) => actions.remove(row).catch(toast)),
      ContextMenu: () => act((row) => setMenuFor(row.id)),
    };
    const key = event.shiftKey && event.key === "F10" ? "ContextMenu" : event.key;
    if (key in handlers && event.target.closest(".side-open, .side-more")) handlers[key]();
  };

  const searchKeys = (event) => {
    if (event.key === "Escape" && text) {
      event.preventDefault();
      setText("");
    } else if (event.key === "ArrowDown" && list.items.length) {
      event.preventDefault();
      focusItem(list.items[0].id);
    }
  };

  const empty = !list.loading && !list.error && list.items.length === 0;
  return html`<div class="sidebar">
    <div class="side-head">
      <button class="primary side-new" data-testid="new-chat" onClick=${() => onNew()}>＋ ${t("side.new")}</button>
      <input
        ref=${searchRef}
        type="search"
        class="side-search"
        data-testid="conversation-search"
        placeholder=${t("side.search")}
        aria-label=${t("side.search")}
        value=${text}
        onInput=${(event) => setText(event.target.value)}
        onKeyDown=${searchKeys}
      />
    </div>
    <nav class="side-scroll" ref=${listRef} aria-label=${t("side.title")}>
      <ul class="side-list" data-testid="conversation-list" onKeyDown=${keys} aria-busy=${list.loading}>
        ${groups.map(
          (group) => html`<li class="side-group" role="presentation" key=${"g:" + group.name}>
              <h3>${group.name}</h3>
            </li>
            ${group.items.map(
              (item) => html`<${Item}
                key=${item.id}
                item=${item}
                current=${item.id === current}
                active=${item.id === focusable}
                menu=${menuFor === item.id}
                renaming=${renaming === item.id}
                actions=${actions}
              />`,
            )}`,
        )}
      </ul>
      ${empty && html`<p class="side-note muted" data-testid="conversation-empty">${q ? t("side.nomatch") : t("side.none")}</p>`}
      ${list.error &&
      html`<p class="side-note error">
        ${t("app.error", { message: list.error.message })}
        <button class="link" onClick=${list.retry}>${t("app.retry")}</button>
      </p>`}
      ${list.loading && html`<p class="side-note muted">${t("app.loading")}</p>`}
      ${list.more &&
      !list.loading &&
      html`<button class="link side-more-page" ref=${endRef} data-testid="conversation-more" onClick=${list.loadMore}>
        ${t("app.more")}
      </button>`}
    </nav>
  </div>`;
}

add({
  en: {
    "side.title": "Conversations",
    "side.new": "New chat",
    "side.search": "Search conversations",
    "side.today": "Today",
    "side.yesterday": "Yesterday",
    "side.week": "Previous 7 days",
    "side.untitled": "Untitled",
    "side.rename": "Rename",
    "side.export.md": "Export as Markdown",
    "side.export.json": "Export as JSON",
    "side.actions": "Actions for {title}",
    "side.confirm.delete": "Delete “{title}”? This cannot be undone.",
    "side.deleted": "Conversation deleted",
    "side.none": "No conversations yet.",
    "side.nomatch": "No conversation title matches.",
    "side.assistant": "Assistant",
    "side.model": "Model",
  },
  zh: {
    "side.title": "对话列表",
    "side.new": "新对话",
    "side.search": "搜索对话",
    "side.today": "今天",
    "side.yesterday": "昨天",
    "side.week": "过去 7 天",
    "side.untitled": "未命名",
    "side.rename": "重命名",
    "side.export.md": "导出为 Markdown",
    "side.export.json": "导出为 JSON",
    "side.actions": "“{title}”的操作",
    "side.confirm.delete": "删除“{title}”？此操作无法撤销。",
    "side.deleted": "对话已删除",
    "side.none": "还没有对话。",
    "side.nomatch": "没有标题匹配的对话。",
    "side.assistant": "助手",
    "side.model": "模型",
  },
});
