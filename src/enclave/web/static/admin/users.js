// The admin users page (placeholder).
import { html } from "../vendor/preact.js";

export default function Page() {
  return html`<main class="page"><h1>users</h1></main>`;
}
