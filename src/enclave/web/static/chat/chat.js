// The chat page (placeholder until the chat helper lands it; this one hosts the sidebar).
import { html, useState } from "../vendor/preact.js";
import { Sidebar } from "./sidebar.js";

const LAYOUT = { display: "grid", gridTemplateColumns: "minmax(0, 300px) minmax(0, 1fr)", minHeight: 0 };

export function ChatPage() {
  const [current, setCurrent] = useState(null);
  return html`<div style=${LAYOUT}>
    <aside style=${{ minHeight: 0, borderRight: "1px solid var(--line)" }}>
      <${Sidebar} current=${current} onOpen=${setCurrent} onNew=${() => setCurrent(null)} />
    </aside>
    <main class="page"><textarea data-testid="composer" data-current=${current || ""}></textarea></main>
  </div>`;
}
