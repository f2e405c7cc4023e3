// The admin upstreams page (placeholder).
import { html } from "../vendor/preact.js";

export default function Page() {
  return html`<main class="page"><h1>upstreams</h1></main>`;
}
