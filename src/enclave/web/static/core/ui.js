// Small shared pieces: toasts, a confirm dialog, async data, buttons, a "load more" pager.
import { html, useCallback, useEffect, useRef, useState } from "../vendor/preact.js";
import { t } from "./i18n.js";

// Toasts: toast("Saved"), toast(error) for errors. Rendered by <Toasts/> in the shell.
const toastListeners = new Set();
let toastId = 0;
export function toast(message, kind = "info") {
  const text = message instanceof Error ? t("app.error", { message: message.message }) : message;
  const item = { id: ++toastId, text, kind: message instanceof Error ? "error" : kind };
  toastListeners.forEach((callback) => callback(item));
}

export function Toasts() {
  const [items, setItems] = useState([]);
  useEffect(() => {
    const add = (item) => {
      setItems((now) => [...now.slice(-3), item]);
      setTimeout(() => setItems((now) => now.filter((x) => x.id !== item.id)), 5000);
    };
    toastListeners.add(add);
    return () => toastListeners.delete(add);
  }, []);
  return html`<div class="toasts" role="status" aria-live="polite">
    ${items.map(
      (item) =>
        html`<div key=${item.id} class=${`toast ${item.kind}`} data-testid="toast">${item.text}</div>`,
    )}
  </div>`;
}

// Load data when the deps change: const [data, error, reload] = useAsync(() => api(...), [x]).
export function useAsync(load, deps) {
  const [state, setState] = useState({ data: undefined, error: null });
  const generation = useRef(0);
  const run = useCallback(() => {
    const mine = ++generation.current;
    Promise.resolve()
      .then(load)
      .then(
        (data) => mine === generation.current && setState({ data, error: null }),
        (error) => mine === generation.current && setState((old) => ({ data: old.data, error })),
      );
  }, deps);
  useEffect(run, [run]);
  return [state.data, state.error, run];
}

export function Loading({ error, retry }) {
  if (error) {
    return html`<div class="notice error">
      ${t("app.error", { message: error.message })}
      ${retry && html` <button class="link" onClick=${retry}>${t("app.retry")}</button>`}
    </div>`;
  }
  return html`<div class="notice muted">${t("app.loading")}</div>`;
}

// A button that runs an async action once at a time and reports its error as a toast.
export function Action({ run, children, confirm, class: cls = "", testid, title, disabled }) {
  const [busy, setBusy] = useState(false);
  const click = async (event) => {
    event.preventDefault();
    if (confirm && !window.confirm(confirm === true ? t("app.confirm") : confirm)) return;
    setBusy(true);
    try {
      await run();
    } catch (error) {
      toast(error);
    } finally {
      setBusy(false);
    }
  };
  return html`<button
    class=${cls}
    onClick=${click}
    disabled=${busy || disabled}
    data-testid=${testid}
    title=${title}
  >
    ${children}
  </button>`;
}

// A modal dialog on <dialog>: Escape closes it, focus stays inside.
export function Dialog({ open, onClose, title, children, wide }) {
  const ref = useRef(null);
  useEffect(() => {
    const dialog = ref.current;
    if (!dialog) return;
    if (open && !dialog.open) dialog.showModal();
    if (!open && dialog.open) dialog.close();
  }, [open]);
  return html`<dialog ref=${ref} class=${wide ? "wide" : ""} onClose=${onClose} onCancel=${onClose}>
    ${open &&
    html`<header>
        <h2>${title}</h2>
        <button class="icon" onClick=${onClose} aria-label=${t("app.close")}>✕</button>
      </header>
      <div class="dialog-body">${children}</div>`}
  </dialog>`;
}

export async function copyText(text) {
  try {
    await navigator.clipboard.writeText(text);
  } catch {
    // no clipboard permission (plain http): a hidden textarea and execCommand
    const area = document.createElement("textarea");
    area.value = text;
    document.body.append(area);
    area.select();
    document.execCommand("copy");
    area.remove();
  }
  toast(t("app.copied"));
}

// Save text as a file the browser downloads.
export function download(name, text, type = "text/plain") {
  const link = document.createElement("a");
  link.href = URL.createObjectURL(new Blob([text], { type }));
  link.download = name;
  link.click();
  setTimeout(() => URL.revokeObjectURL(link.href), 1000);
}

// Debounce a value (search boxes): the value once it has not changed for `ms`.
export function useDebounced(value, ms = 250) {
  const [settled, setSettled] = useState(value);
  useEffect(() => {
    const timer = setTimeout(() => setSettled(value), ms);
    return () => clearTimeout(timer);
  }, [value, ms]);
  return settled;
}

export function formatMs(ms) {
  if (ms === null || ms === undefined) return "–";
  return ms < 1000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(2)} s`;
}
