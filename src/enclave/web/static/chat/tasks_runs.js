// The runs list of the Tasks page: newest first, 20 at a time ("Older" follows the
// server's cursor, never an offset), filtered by status and task (and owner, for
// administrators, who see everyone's runs). While a listed run is queued or running the
// first page is read again every two seconds (not while the tab is hidden), so statuses
// and progress bars move.
import { html, useEffect, useRef, useState } from "../vendor/preact.js";
import { api } from "../core/api.js";
import { t, when } from "../core/i18n.js";
import { go } from "../core/shell.js";
import { Loading, formatMs, useDebounced } from "../core/ui.js";
import { ProgressBar, STATUSES, StatusBadge, active } from "./tasks_common.js";

const PAGE = 20;
const REFRESH_MS = 2000;

function took(run) {
  if (!run.started_at) return "";
  const end = run.finished_at ? Date.parse(run.finished_at) : Date.now();
  return formatMs(end - Date.parse(run.started_at));
}

// Fresh rows replace the ones with their id; runs new since are put first.
function merge(old, fresh) {
  const byId = new Map(fresh.map((run) => [run.id, run]));
  const kept = old.map((run) => byId.get(run.id) || run);
  const known = new Set(old.map((run) => run.id));
  return [...fresh.filter((run) => !known.has(run.id)), ...kept];
}

function RunRow({ run, admin }) {
  const open = () => go("tasks", run.id);
  const keyed = (event) => event.key === "Enter" && open();
  return html`<tr class="clickable" tabindex="0" onClick=${open} onKeyDown=${keyed} data-testid="run-item" data-id=${run.id} data-status=${run.status}>
    <td data-label=${t("tasks.runs.task")}>
      <a href=${`#/tasks/${encodeURIComponent(run.id)}`} onClick=${(e) => e.stopPropagation()}><strong>${run.task}</strong></a>
      <div class="muted small tk-id">${run.id}</div>
    </td>
    <td data-label=${t("tasks.runs.status")}><${StatusBadge} status=${run.status} /></td>
    <td data-label=${t("tasks.runs.progress")} class="tk-cell-progress">
      <${ProgressBar} run=${run} percent=${run.progress?.percent} compact />
    </td>
    ${admin && html`<td data-label=${t("tasks.runs.owner")}>${run.owner || "–"}</td>`}
    <td data-label=${t("tasks.runs.created")} class="small">${when(run.created_at)}</td>
    <td data-label=${t("tasks.runs.took")} class="small num">${took(run)}</td>
  </tr>`;
}

function Filters({ filters, setFilters, tasks, admin }) {
  const set = (key) => (event) => setFilters({ ...filters, [key]: event.target.value });
  return html`<div class="row tk-filters">
    <select aria-label=${t("tasks.runs.status")} data-testid="runs-status" value=${filters.status} onChange=${set("status")}>
      <option value="">${t("tasks.runs.anyStatus")}</option>
      ${STATUSES.map((status) => html`<option value=${status}>${t("tasks.status." + status)}</option>`)}
    </select>
    <select aria-label=${t("tasks.runs.task")} data-testid="runs-task" value=${filters.task} onChange=${set("task")}>
      <option value="">${t("tasks.runs.anyTask")}</option>
      ${tasks.map((task) => html`<option value=${task.name}>${task.name}</option>`)}
    </select>
    ${admin &&
    html`<input
      type="search"
      data-testid="runs-owner"
      aria-label=${t("tasks.runs.owner")}
      placeholder=${t("tasks.runs.anyOwner")}
      value=${filters.owner}
      onInput=${set("owner")}
    />`}
  </div>`;
}

function useRuns(filters) {
  const owner = useDebounced(filters.owner.trim(), 300);
  const query = { status: filters.status, task: filters.task, owner, limit: PAGE };
  const [state, setState] = useState({ rows: null, next: null, error: null });
  const generation = useRef(0);
  const load = async (before) => {
    const mine = generation.current;
    try {
      const found = await api("/api/runs", { query: { ...query, before } });
      if (mine !== generation.current) return;
      setState((old) => ({
        rows: before ? [...old.rows, ...found.data] : found.data,
        next: found.next,
        error: null,
      }));
    } catch (error) {
      if (mine === generation.current) setState((old) => ({ ...old, error }));
    }
  };
  const refresh = async () => {
    const mine = generation.current;
    try {
      const found = await api("/api/runs", { query });
      if (mine === generation.current) setState((old) => ({ ...old, rows: merge(old.rows || [], found.data), error: null }));
    } catch {
      // the next refresh tries again; the rows shown stay
    }
  };
  useEffect(() => {
    generation.current += 1;
    setState({ rows: null, next: null, error: null });
    load();
  }, [filters.status, filters.task, owner]);
  const moving = (state.rows || []).some((run) => active(run.status));
  useEffect(() => {
    if (!moving) return undefined;
    const timer = setInterval(() => document.visibilityState === "visible" && refresh(), REFRESH_MS);
    return () => clearInterval(timer);
  }, [moving, filters.status, filters.task, owner]);
  return [state, load];
}

export function RunsList({ who, tasks }) {
  const admin = who.role === "admin";
  const [filters, setFilters] = useState({ status: "", task: "", owner: "" });
  const [state, load] = useRuns(filters);
  const heads = ["task", "status", "progress", ...(admin ? ["owner"] : []), "created", "took"];
  let body;
  if (!state.rows) body = html`<${Loading} error=${state.error} retry=${() => load()} />`;
  else if (!state.rows.length) body = html`<p class="muted" data-testid="runs-empty">${t("tasks.runs.none")}</p>`;
  else {
    body = html`<div class="table-wrap">
      <table class="tk-runs cards-on-phone" data-testid="runs-list">
        <thead>
          <tr>
            ${heads.map((head) => html`<th class=${head === "took" ? "num" : ""}>${t("tasks.runs." + head)}</th>`)}
          </tr>
        </thead>
        <tbody>
          ${state.rows.map((run) => html`<${RunRow} key=${run.id} run=${run} admin=${admin} />`)}
        </tbody>
      </table>
    </div>`;
  }
  return html`<section class="card ws-section" aria-labelledby="runs-title">
    <div class="row">
      <h2 id="runs-title">${t("tasks.runs.title")}</h2>
      <span class="spacer"></span>
      <${Filters} filters=${filters} setFilters=${setFilters} tasks=${tasks} admin=${admin} />
    </div>
    ${body}
    ${state.rows && state.error && html`<${Loading} error=${state.error} />`}
    ${state.next &&
    html`<button class="link" data-testid="runs-more" onClick=${() => load(state.next)}>${t("tasks.runs.older")}</button>`}
  </section>`;
}
