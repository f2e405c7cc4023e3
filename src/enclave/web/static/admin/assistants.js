// The admin assistants page (placeholder).
import { html } from "../vendor/preact.js";

export default function Page() {
  return html`<main class="page"><h1>assistants</h1></main>`;
}
