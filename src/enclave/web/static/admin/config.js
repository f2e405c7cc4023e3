// The admin config page (placeholder).
import { html } from "../vendor/preact.js";

export default function Page() {
  return html`<main class="page"><h1>config</h1></main>`;
}
