// The conversation sidebar (placeholder: the sidebar helper's chat/sidebar.js replaces it).
// <Sidebar current=${id} onOpen=${(id) => ...} onNew=${() => ...} refreshKey=${n} />
import { html } from "../vendor/preact.js";
import { api } from "../core/api.js";
import { t } from "../core/i18n.js";
import { useAsync } from "../core/ui.js";

export function Sidebar({ current, onOpen, onNew, refreshKey }) {
  const [page] = useAsync(() => api("/api/conversations", { query: { limit: 50 } }), [refreshKey]);
  return html`<nav class="sidebar">
    <button class="primary" data-testid="new-chat" onClick=${onNew}>${t("chat.new")}</button>
    <ul data-testid="conversation-list">
      ${(page?.data || []).map(
        (item) => html`<li key=${item.id}>
          <button class=${item.id === current ? "current" : ""} data-testid="conversation-item" onClick=${() => onOpen(item.id)}>
            ${item.title || item.id}
          </button>
        </li>`,
      )}
    </ul>
  </nav>`;
}
