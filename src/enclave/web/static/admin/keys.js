// The admin keys page (placeholder).
import { html } from "../vendor/preact.js";

export default function Page() {
  return html`<main class="page"><h1>keys</h1></main>`;
}
