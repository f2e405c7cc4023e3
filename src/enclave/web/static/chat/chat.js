// The chat page (placeholder until the chat helper lands it).
import { html } from "../vendor/preact.js";

export function ChatPage() {
  return html`<main class="page"><textarea data-testid="composer"></textarea></main>`;
}
