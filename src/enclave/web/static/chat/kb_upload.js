// Uploads to a knowledge base: files and folders (picked or dropped) become a queue of
// items; at most PARALLEL run at once, each one PUT (with upload progress) and then its
// ingest job (a view of the kb-ingest run the upload started), polled with a bounded
// backoff until it has finished. The queue lives in this
// module, so leaving the page and coming back shows the uploads still under way.
import { useEffect, useState } from "../vendor/preact.js";
import { api, upload } from "../core/api.js";
import { number, t } from "../core/i18n.js";
import { bytes } from "./workspace.js";

const PARALLEL = 3;
const POLL_FIRST_MS = 200;
const POLL_MAX_MS = 2000;
const FINISHED = new Set(["done", "failed", "cancelled"]);
// The suffixes the server reads (enclave.knowledge.documents.KINDS; a unit test keeps
// the two lists the same). Other files in a folder are skipped.
export const SUFFIXES = [
  ".txt", ".text", ".log", ".md", ".markdown", ".html", ".htm", ".pdf", ".docx", ".csv", ".tsv",
];

let items = [];
let nextId = 0;
const listeners = new Set();

function changed() {
  items = [...items];
  listeners.forEach((callback) => callback(items));
}

function patch(item, values) {
  Object.assign(item, values);
  changed();
}

// The uploads of knowledge base `kb`, re-rendered as they move.
export function useUploads(kb) {
  const [all, setAll] = useState(items);
  useEffect(() => {
    listeners.add(setAll);
    return () => listeners.delete(setAll);
  }, []);
  return all.filter((item) => item.kb === kb);
}

export function clearFinished(kb) {
  items = items.filter((item) => item.kb !== kb || !FINISHED.has(item.state));
  changed();
}

const suffixOf = (name) => {
  const dot = name.lastIndexOf(".");
  return dot > 0 ? name.slice(dot).toLowerCase() : "";
};

// What is wrong with one file before it is sent, or "".
function refusal(file, limit, seen) {
  if (!SUFFIXES.includes(suffixOf(file.name))) {
    return t("kb.upload.unsupported", { types: SUFFIXES.join(" ") });
  }
  if (seen.has(file.name)) return t("kb.upload.duplicate");
  if (limit && file.size > limit.bytes) {
    let [size, most] = [bytes(file.size), bytes(limit.bytes)];
    if (size === most) [size, most] = [`${number(file.size)} B`, `${number(limit.bytes)} B`]; // just over
    return t("kb.upload.tooBig", { size, limit: most, setting: limit.setting });
  }
  return "";
}

// Queue files for `kb`: [{file, path, fromFolder}]. A document's name on the server is
// the file's own name (the API takes one plain name), so two files of one name in one
// batch are refused; files of a folder that the server cannot read are skipped and
// counted. `limit` ({bytes, setting} or null): the largest file the server takes.
export function enqueue(kb, picked, limit, onFinished) {
  const seen = new Set(items.filter((i) => i.kb === kb && !FINISHED.has(i.state)).map((i) => i.name));
  let skipped = 0;
  for (const { file, path, fromFolder } of picked) {
    if (fromFolder && (file.name.startsWith(".") || !SUFFIXES.includes(suffixOf(file.name)))) {
      skipped += 1;
      continue;
    }
    const why = refusal(file, limit, seen);
    seen.add(file.name);
    const item = {
      id: ++nextId, kb, file, name: file.name, path, size: file.size, onFinished,
      state: why ? "failed" : "waiting", error: why, sent: 0, job: null,
    };
    items.push(item);
  }
  changed();
  pump();
  return skipped;
}

function pump() {
  const running = items.filter((item) => item.state === "uploading" || item.state === "ingesting");
  const waiting = items.filter((item) => item.state === "waiting");
  for (const item of waiting.slice(0, Math.max(0, PARALLEL - running.length))) run(item);
}

async function run(item) {
  patch(item, { state: "uploading", sent: 0 });
  try {
    const path = `/api/kb/${encodeURIComponent(item.kb)}/documents/${encodeURIComponent(item.name)}`;
    const job = await upload(path, item.file, {
      contentType: "application/octet-stream",
      onProgress: (share) => patch(item, { sent: share }),
    });
    patch(item, { state: "ingesting", sent: 1, job });
    await follow(item);
  } catch (error) {
    patch(item, { state: "failed", error: error.message });
  } finally {
    item.onFinished?.();
    pump();
  }
}

const pause = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// Poll the item's job until it has finished: 200 ms, then 1.5 times longer up to 2 s.
async function follow(item) {
  let delay = POLL_FIRST_MS;
  let job = item.job;
  while (!FINISHED.has(job.status)) {
    await pause(delay);
    delay = Math.min(POLL_MAX_MS, delay * 1.5);
    job = await api(`/api/kb/${encodeURIComponent(item.kb)}/jobs/${encodeURIComponent(job.id)}`);
    if (item.state === "cancelled") return;
    patch(item, { job });
  }
  const errors = Object.values(job.errors || {});
  const error = errors.join("; ") || job.error || "";
  patch(item, { state: job.status === "done" && !error ? "done" : job.status === "done" ? "failed" : job.status, error });
}

// Cancel a waiting item here, or its running job on the server.
export async function cancel(item) {
  if (item.state === "waiting") {
    patch(item, { state: "cancelled" });
    return;
  }
  if (item.state !== "ingesting" || !item.job) return;
  const job = await api(
    `/api/kb/${encodeURIComponent(item.kb)}/jobs/${encodeURIComponent(item.job.id)}/cancel`,
    { method: "POST" },
  );
  patch(item, { job, state: FINISHED.has(job.status) ? job.status : item.state });
}

// Files under a dropped folder entry (FileSystemDirectoryEntry), read in batches.
function readAll(directory) {
  const reader = directory.createReader();
  const entries = [];
  return new Promise((resolve, reject) => {
    const next = () =>
      reader.readEntries((batch) => {
        if (!batch.length) return resolve(entries);
        entries.push(...batch);
        next();
      }, reject);
    next();
  });
}

async function walk(entry, fromFolder, out) {
  if (entry.isFile) {
    const file = await new Promise((resolve, reject) => entry.file(resolve, reject));
    out.push({ file, path: entry.fullPath.replace(/^\//, ""), fromFolder });
  } else if (entry.isDirectory) {
    for (const child of await readAll(entry)) await walk(child, true, out);
  }
}

// The files of a drop: plain files, and every file under dropped folders.
export async function dropped(transfer) {
  // Every entry must be taken before the first await: the list empties after the event.
  const entries = [...transfer.items]
    .filter((item) => item.kind === "file")
    .map((item) => item.webkitGetAsEntry?.())
    .filter(Boolean);
  if (!entries.length) return [...transfer.files].map((file) => ({ file, path: file.name, fromFolder: false }));
  const out = [];
  for (const entry of entries) await walk(entry, false, out);
  return out;
}

// The files of an <input type=file> (with webkitdirectory, each has its relative path).
export function picked(input) {
  return [...input.files].map((file) => ({
    file,
    path: file.webkitRelativePath || file.name,
    fromFolder: Boolean(file.webkitRelativePath),
  }));
}

// The largest file the server takes, when this caller may read the configuration
// (administrators: the only ones who upload): the smaller of the request body limit and
// the ingest limit on one file. null when unknown; the server's refusal is then shown.
let limitOnce = null;
export function uploadLimit() {
  limitOnce ??= api("/api/admin/config").then(
    ({ settings }) => {
      const body = Number(settings?.limits?.max_body_bytes);
      const file = Number(settings?.knowledge?.ingest?.max_unpacked_bytes);
      const known = [
        [body, "limits.max_body_bytes"],
        [file, "knowledge.ingest.max_unpacked_bytes"],
      ].filter(([value]) => Number.isFinite(value) && value > 0);
      if (!known.length) return null;
      const [smallest, setting] = known.sort((a, b) => a[0] - b[0])[0];
      return { bytes: smallest, setting };
    },
    () => null,
  );
  return limitOnce;
}
