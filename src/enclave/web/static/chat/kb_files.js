// The upload area of a knowledge base: pick files or a folder, or drop them; each file's
// upload progress, then its ingest job's (a view of its kb-ingest run), its error, and a
// cancel button.
import { html, useEffect, useRef, useState } from "../vendor/preact.js";
import { t } from "../core/i18n.js";
import { Action, toast } from "../core/ui.js";
import { cancel, clearFinished, dropped, enqueue, picked, uploadLimit, useUploads } from "./kb_upload.js";
import { bytes } from "./workspace.js";

function progressOf(item) {
  if (item.state === "uploading") return { value: item.sent, label: t("kb.upload.sending", { n: Math.round(item.sent * 100) }) };
  if (item.state !== "ingesting") return null;
  const job = item.job;
  if (job.status === "queued") return { value: null, label: t("kb.upload.queued") };
  // The job is a view of its kb-ingest run: its progress is the share of the files done.
  const percent = job.progress?.percent;
  return {
    value: percent == null ? null : percent / 100,
    label: t("kb.upload.indexing", { done: job.files_done, total: job.files_total }),
  };
}

function Item({ item }) {
  const progress = progressOf(item);
  const cancellable = item.state === "waiting" || (item.state === "ingesting" && item.job);
  return html`<li class=${`ws-upload ${item.state}`} data-testid="kb-upload" data-name=${item.name} data-state=${item.state}>
    <div class="row ws-upload-head">
      <span class="ws-upload-name" title=${item.path}>${item.path}</span>
      <span class="muted small">${bytes(item.size)}</span>
      <span class="spacer"></span>
      <span class=${`badge ${item.state === "done" ? "ok" : item.state === "failed" ? "error" : ""}`}>
        ${t("kb.upload.state." + item.state)}
      </span>
      ${cancellable &&
      html`<${Action} class="link" testid="kb-upload-cancel" run=${() => cancel(item)}>${t("app.cancel")}<//>`}
    </div>
    ${progress &&
    html`<div class="ws-progress">
      <progress max="1" value=${progress.value ?? undefined} aria-label=${progress.label}></progress>
      <span class="small muted">${progress.label}</span>
    </div>`}
    ${item.error && html`<p class="error small" data-testid="kb-upload-error">${item.error}</p>`}
  </li>`;
}

export function Uploads({ kb, onFinished }) {
  const uploads = useUploads(kb);
  const [limit, setLimit] = useState(null);
  const [over, setOver] = useState(false);
  const files = useRef(null);
  const folder = useRef(null);
  useEffect(() => {
    uploadLimit().then(setLimit);
  }, []);
  const add = (list) => {
    const skipped = enqueue(kb, list, limit, onFinished);
    if (skipped) toast(t("kb.upload.skipped", { n: skipped }));
  };
  const chosen = (event) => {
    add(picked(event.target));
    event.target.value = "";
  };
  const drop = async (event) => {
    event.preventDefault();
    setOver(false);
    try {
      add(await dropped(event.dataTransfer));
    } catch (error) {
      toast(error);
    }
  };
  const dragOver = (event) => {
    event.preventDefault();
    event.dataTransfer.dropEffect = "copy";
    setOver(true);
  };
  const finished = uploads.some((item) => ["done", "failed", "cancelled"].includes(item.state));
  return html`<section class="card ws-section" aria-labelledby="kb-upload-title">
    <h2 id="kb-upload-title">${t("kb.upload.title")}</h2>
    <div
      class=${`ws-drop ${over ? "over" : ""}`}
      data-testid="kb-drop"
      onDragOver=${dragOver}
      onDragEnter=${dragOver}
      onDragLeave=${() => setOver(false)}
      onDrop=${drop}
    >
      <p>${t("kb.upload.drop")}</p>
      <div class="row">
        <button class="primary" onClick=${() => files.current.click()}>${t("kb.upload.files")}</button>
        <button onClick=${() => folder.current.click()}>${t("kb.upload.folder")}</button>
      </div>
      <p class="muted small">
        ${t("kb.upload.types")}${limit && ` · ${t("kb.upload.limit", { limit: bytes(limit.bytes) })}`}
      </p>
      <input ref=${files} class="hidden" type="file" multiple data-testid="kb-upload-files" onChange=${chosen} />
      <input ref=${folder} class="hidden" type="file" webkitdirectory multiple data-testid="kb-upload-folder" onChange=${chosen} />
    </div>
    ${uploads.length > 0 &&
    html`<ul class="ws-uploads" data-testid="kb-uploads" aria-live="polite">
        ${uploads.map((item) => html`<${Item} key=${item.id} item=${item} />`)}
      </ul>
      ${finished &&
      html`<button class="link" data-testid="kb-upload-clear" onClick=${() => clearFinished(kb)}>${t("kb.upload.clear")}</button>`}`}
  </section>`;
}
