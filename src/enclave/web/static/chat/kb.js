// The kb page (placeholder).
import { html } from "../vendor/preact.js";

export default function Page() {
  return html`<main class="page narrow"><h1>kb</h1></main>`;
}
