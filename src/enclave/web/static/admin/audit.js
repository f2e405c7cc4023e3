// The admin audit page (placeholder).
import { html } from "../vendor/preact.js";

export default function Page() {
  return html`<main class="page"><h1>audit</h1></main>`;
}
