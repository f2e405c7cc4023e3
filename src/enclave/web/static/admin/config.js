// The effective configuration (GET /api/admin/config): a tree with a search box; the
// server masks every secret as "***" before it leaves the gateway.
import { html, useMemo, useState } from "../vendor/preact.js";
import { api } from "../core/api.js";
import { add, t } from "../core/i18n.js";
import { Loading, copyText, useAsync, useDebounced } from "../core/ui.js";
import { PageHead } from "./common.js";

add({
  en: {
    "admin.config.path": "Config file",
    "admin.config.nofile": "none (defaults, environment and flags only)",
    "admin.config.search": "Search settings",
    "admin.config.masked": "masked",
    "admin.config.masked.hint": "A secret: the gateway never sends its value.",
    "admin.config.matches": "{n} matching settings",
    "admin.config.copy": "Copy as JSON",
    "admin.config.expand": "Expand all",
    "admin.config.collapse": "Collapse all",
  },
  zh: {
    "admin.config.path": "配置文件",
    "admin.config.nofile": "无（仅默认值、环境变量和命令行参数）",
    "admin.config.search": "搜索设置项",
    "admin.config.masked": "已隐藏",
    "admin.config.masked.hint": "这是机密信息：网关从不发送其值。",
    "admin.config.matches": "{n} 个匹配的设置项",
    "admin.config.copy": "复制为 JSON",
    "admin.config.expand": "全部展开",
    "admin.config.collapse": "全部折叠",
  },
});

const MASK = "***";
const isTree = (value) => value !== null && typeof value === "object";

function Leaf({ value }) {
  if (value === MASK) {
    return html`<span class="badge warn masked" title=${t("admin.config.masked.hint")} data-testid="config-masked">*** ${t("admin.config.masked")}</span>`;
  }
  if (value === null) return html`<span class="muted">null</span>`;
  if (typeof value === "string") return html`<span class="v-str">"${value}"</span>`;
  return html`<span class=${`v-${typeof value}`}>${String(value)}</span>`;
}

// Does this path or any value under it contain the search text?
function matches(path, value, needle) {
  if (!needle) return true;
  if (path.toLowerCase().includes(needle)) return true;
  if (isTree(value)) return Object.entries(value).some(([k, v]) => matches(`${path}.${k}`, v, needle));
  return String(value).toLowerCase().includes(needle);
}

function Node({ name, path, value, needle, open }) {
  if (!isTree(value)) {
    return html`<li class="leaf" data-path=${path}><span class="k">${name}</span>: <${Leaf} value=${value} /></li>`;
  }
  const entries = Object.entries(value).filter(([k, v]) => matches(`${path}.${k}`, v, needle) || path.toLowerCase().includes(needle));
  const empty = Array.isArray(value) ? "[]" : "{}";
  if (!Object.keys(value).length) return html`<li class="leaf" data-path=${path}><span class="k">${name}</span>: <span class="muted">${empty}</span></li>`;
  return html`<li data-path=${path}>
    <details open=${open || !!needle}>
      <summary><span class="k">${name}</span> <span class="muted small">${Array.isArray(value) ? `[${value.length}]` : ""}</span></summary>
      <ul>
        ${entries.map(([k, v]) => html`<${Node} key=${k} name=${k} path=${`${path}.${k}`} value=${v} needle=${needle} open=${open} />`)}
      </ul>
    </details>
  </li>`;
}

function countLeaves(value, path, needle) {
  if (!isTree(value)) return matches(path, value, needle) ? 1 : 0;
  return Object.entries(value).reduce((n, [k, v]) => n + countLeaves(v, `${path}.${k}`, path.toLowerCase().includes(needle) ? "" : needle), 0);
}

export default function Config() {
  const [config, error, reload] = useAsync(() => api("/api/admin/config"), []);
  const [search, setSearch] = useState("");
  const [open, setOpen] = useState(false);
  const [generation, setGeneration] = useState(0);
  const needle = useDebounced(search.trim().toLowerCase(), 150);
  const settings = config?.settings || {};
  const top = useMemo(() => Object.entries(settings).filter(([k, v]) => matches(k, v, needle)), [config, needle]);
  const count = useMemo(() => (needle ? top.reduce((n, [k, v]) => n + countLeaves(v, k, needle), 0) : null), [top, needle]);
  const toggle = (value) => {
    setOpen(value);
    setGeneration((g) => g + 1); // remount the <details> so the new default applies
  };
  return html`<main class="page admin">
    <${PageHead} title=${t("admin.nav.config")}>
      <input
        type="search"
        class="filter"
        data-testid="config-search"
        placeholder=${t("admin.config.search")}
        aria-label=${t("admin.config.search")}
        value=${search}
        onInput=${(e) => setSearch(e.target.value)}
      />
      <button onClick=${() => toggle(!open)}>${open ? t("admin.config.collapse") : t("admin.config.expand")}</button>
      ${config && html`<button onClick=${() => copyText(JSON.stringify(config.settings, null, 2))}>${t("admin.config.copy")}</button>`}
    <//>
    ${!config
      ? html`<${Loading} error=${error} retry=${reload} />`
      : html`<p class="muted">
            ${`${t("admin.config.path")}: `}<code data-testid="config-path">${config.path || t("admin.config.nofile")}</code>
            ${count !== null && html` · ${t("admin.config.matches", { n: count })}`}
          </p>
          <div class="card">
            <ul class="tree" data-testid="config-tree" key=${generation}>
              ${top.map(([k, v]) => html`<${Node} key=${k} name=${k} path=${k} value=${v} needle=${needle} open=${open} />`)}
            </ul>
          </div>`}
  </main>`;
}
