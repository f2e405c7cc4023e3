// The admin dashboard page (placeholder).
import { html } from "../vendor/preact.js";

export default function Page() {
  return html`<main class="page"><h1>dashboard</h1></main>`;
}
