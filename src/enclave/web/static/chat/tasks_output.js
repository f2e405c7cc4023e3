// What a run made: its result (Markdown rendered as chat answers are, or the JSON it is)
// and its output files, each opened in the page (Markdown rendered, text as it is) or
// downloaded. The files route needs the session's bearer token, so the page fetches a file
// and hands the browser a blob; a link to the route itself would have no token.
import { html, useEffect, useState } from "../vendor/preact.js";
import { send } from "../core/api.js";
import { t } from "../core/i18n.js";
import { Dialog, copyText, toast } from "../core/ui.js";
import { memoized, onMath } from "./markdown.js";
import { runPath } from "./tasks_common.js";
import { bytes } from "./workspace.js";

const TEXT = /\.(md|markdown|txt|text|log|json|jsonl|csv|tsv|yaml|yml|xml|html?|ini|toml|py|js|sh)$/i;
const MARKDOWN = /\.(md|markdown)$/i;
const OPEN_MAX = 2 * 1024 * 1024; // bytes shown in the page; a bigger file is downloaded

const filePath = (run, path) => runPath(run, "/files/" + path.split("/").map(encodeURIComponent).join("/"));
const baseName = (path) => path.split("/").pop();

// The text a result reads as: the `text` of a step's output, or the result if it is text.
export function resultText(result) {
  if (typeof result === "string") return result;
  if (result && typeof result === "object" && typeof result.text === "string") return result.text;
  return null;
}

// Copy buttons on code blocks, as in the chat thread.
function copyCode(event) {
  const button = event.target.closest(".copy-code");
  const code = button?.parentElement.querySelector("code");
  if (code) copyText(code.textContent);
}

// Markdown as a chat answer is drawn (and drawn again when highlight.js or KaTeX arrives).
export function Markdown({ text, testid }) {
  const [, setGeneration] = useState(0);
  useEffect(() => onMath(setGeneration), []);
  return html`<div class="md tk-md" data-testid=${testid} onClick=${copyCode} dangerouslySetInnerHTML=${{ __html: memoized(text) }}></div>`;
}

export function Result({ result }) {
  if (result === null || result === undefined) return null;
  const text = resultText(result);
  const rest = text !== null && typeof result === "object" ? Object.keys(result).filter((key) => key !== "text") : [];
  return html`<section class="card ws-section" aria-labelledby="run-result-title" data-testid="run-result">
    <div class="row">
      <h2 id="run-result-title">${t("tasks.run.result")}</h2>
      <span class="spacer"></span>
      ${text !== null && html`<button class="link" onClick=${() => copyText(text)}>${t("app.copy")}</button>`}
    </div>
    ${text !== null
      ? html`<${Markdown} text=${text} testid="run-result-text" />`
      : html`<pre class="tk-json-view" data-testid="run-result-json">${JSON.stringify(result, null, 2)}</pre>`}
    ${rest.length > 0 &&
    html`<details class="small">
      <summary>${t("tasks.run.details")}</summary>
      <pre class="tk-json-view">${JSON.stringify(Object.fromEntries(rest.map((key) => [key, result[key]])), null, 2)}</pre>
    </details>`}
  </section>`;
}

async function fetchBlob(run, path) {
  const response = await send(filePath(run, path));
  return response.blob();
}

async function download(run, path) {
  const blob = await fetchBlob(run, path);
  const link = document.createElement("a");
  link.href = URL.createObjectURL(blob);
  link.download = baseName(path);
  link.click();
  setTimeout(() => URL.revokeObjectURL(link.href), 1000);
}

function Viewer({ file, text, onClose }) {
  return html`<${Dialog} open=${true} wide onClose=${onClose} title=${file.path}>
    <div data-testid="file-view">
      ${MARKDOWN.test(file.path) ? html`<${Markdown} text=${text} testid="file-view-md" />` : html`<pre class="tk-file-text">${text}</pre>`}
    </div>
  <//>`;
}

export function Files({ run, files }) {
  const [open, setOpen] = useState(null);
  if (!files || !files.length) return null;
  const act = (job) => job().catch((error) => toast(error));
  const view = (file) =>
    act(async () => {
      const text = await (await fetchBlob(run, file.path)).text();
      setOpen({ file, text });
    });
  return html`<section class="card ws-section" aria-labelledby="run-files-title">
    <h2 id="run-files-title">${t("tasks.run.files")}</h2>
    <ul class="tk-files" data-testid="run-files">
      ${files.map(
        (file) => html`<li key=${file.path} class="row" data-testid="run-file" data-path=${file.path}>
          <span class="tk-file-name" title=${file.path}>${file.path}</span>
          <span class="muted small">${bytes(file.bytes)}</span>
          <span class="spacer"></span>
          ${TEXT.test(file.path) &&
          (file.bytes ?? 0) <= OPEN_MAX &&
          html`<button class="link" data-testid="run-file-open" onClick=${() => view(file)}>${t("tasks.run.open")}</button>`}
          <button class="link" data-testid="run-file-download" onClick=${() => act(() => download(run, file.path))}>
            ${t("tasks.run.download")}
          </button>
        </li>`,
      )}
    </ul>
    ${open && html`<${Viewer} file=${open.file} text=${open.text} onClose=${() => setOpen(null)} />`}
  </section>`;
}
