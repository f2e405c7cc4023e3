// The memory page (placeholder).
import { html } from "../vendor/preact.js";

export default function Page() {
  return html`<main class="page narrow"><h1>memory</h1></main>`;
}
