// The Schedules page (#/schedules): tasks that start on their own, by a cron expression in
// a time zone, every N minutes, or once at a time. Each shows when it runs next and its
// last run (a link to it); pause, resume and remove. #/schedules/new/TASK opens the form
// with that task chosen (the Tasks page's start form links there).
import { html, useEffect } from "../vendor/preact.js";
import { api } from "../core/api.js";
import { t, when } from "../core/i18n.js";
import { go } from "../core/shell.js";
import { Action, Loading, toast, useAsync } from "../core/ui.js";
import { ScheduleDialog } from "./schedules_form.js";
import { schedulePath, triggerText } from "./tasks_common.js";
import { Empty } from "./workspace.js";

function Actions({ item, onChanged }) {
  const flip = async () => {
    const verb = item.paused ? "resume" : "pause";
    await api(schedulePath(item.id, `/${verb}`), { method: "POST" });
    onChanged();
    toast(t(`schedules.${verb}.done`, { name: item.name }));
  };
  const remove = async () => {
    await api(schedulePath(item.id), { method: "DELETE" });
    toast(t("schedules.removed", { name: item.name }));
    onChanged();
  };
  return html`<div class="row tk-actions">
    <${Action} testid=${item.paused ? "schedule-resume" : "schedule-pause"} run=${flip}>
      ${item.paused ? t("schedules.resume") : t("schedules.pause")}
    <//>
    <${Action} class="danger" testid="schedule-remove" confirm=${t("schedules.removeConfirm", { name: item.name })} run=${remove}>
      ${t("schedules.remove")}
    <//>
  </div>`;
}

function Row({ item, admin, onChanged }) {
  const last = item.last_run
    ? html`<a href=${`#/tasks/${encodeURIComponent(item.last_run)}`} data-testid="schedule-last-run">${when(item.last_run_at) || item.last_run}</a>`
    : html`<span class="muted">${t("schedules.never")}</span>`;
  return html`<tr data-testid="schedule-item" data-id=${item.id} data-paused=${String(item.paused)}>
    <td data-label=${t("schedules.col.name")}>
      <strong>${item.name}</strong>
      <div class="muted small">${t("schedules.ofTask", { task: item.task })}</div>
    </td>
    <td data-label=${t("schedules.col.trigger")} class="tk-trigger" data-testid="schedule-trigger">${triggerText(item.trigger)}</td>
    <td data-label=${t("schedules.col.next")} class="small">
      ${item.paused
        ? html`<span class="badge warn" data-testid="schedule-paused">${t("schedules.paused")}</span>`
        : item.next_run_at
          ? when(item.next_run_at)
          : html`<span class="muted">${t("schedules.finished")}</span>`}
    </td>
    <td data-label=${t("schedules.col.last")} class="small">${last}</td>
    ${admin && html`<td data-label=${t("schedules.col.owner")}>${item.owner || "–"}</td>`}
    <td class="actions"><${Actions} item=${item} onChanged=${onChanged} /></td>
  </tr>`;
}

function List({ rows, admin, onChanged }) {
  const heads = ["name", "trigger", "next", "last", ...(admin ? ["owner"] : [])];
  return html`<div class="table-wrap">
    <table class="tk-schedules cards-on-phone" data-testid="schedule-list">
      <thead>
        <tr>
          ${heads.map((head) => html`<th>${t("schedules.col." + head)}</th>`)}
          <th><span class="hidden-label">${t("schedules.col.actions")}</span></th>
        </tr>
      </thead>
      <tbody>
        ${rows.map((item) => html`<${Row} key=${item.id} item=${item} admin=${admin} onChanged=${onChanged} />`)}
      </tbody>
    </table>
  </div>`;
}

const REFRESH_MS = 15_000; // next and last runs move as schedules fire

export default function SchedulesPage({ who, route }) {
  const [list, error, reload] = useAsync(() => api("/api/schedules"), []);
  const [tasks] = useAsync(() => api("/api/tasks"), []);
  useEffect(() => {
    const timer = setInterval(() => document.visibilityState === "visible" && reload(), REFRESH_MS);
    return () => clearInterval(timer);
  }, [reload]);
  const adding = route[1] === "new";
  const startable = (tasks?.data || []).filter((task) => !task.name.startsWith("kb-ingest"));
  const made = (item) => {
    toast(t("schedules.added", { name: item.name }));
    reload();
    go("schedules");
  };
  let body;
  if (!list) body = html`<${Loading} error=${error} retry=${reload} />`;
  else if (!list.data.length) {
    body = html`<${Empty} title=${t("schedules.empty.title")} testid="schedules-empty"><p>${t("schedules.empty.body")}</p><//>`;
  } else {
    body = html`<section class="card ws-section">
      <${List} rows=${list.data} admin=${who.role === "admin"} onChanged=${reload} />
    </section>`;
  }
  return html`<main class="page narrow ws-page" data-testid="schedules-page">
    <div class="row ws-title">
      <h1>${t("schedules.title")}</h1>
      <span class="spacer"></span>
      <button class="primary" data-testid="schedule-add" disabled=${!tasks} onClick=${() => go("schedules", "new")}>
        ${t("schedules.add")}
      </button>
    </div>
    <p class="muted">${t("schedules.intro")}</p>
    ${body}
    ${adding &&
    tasks &&
    html`<${ScheduleDialog} tasks=${startable} task=${route[2]} onClose=${() => go("schedules")} onMade=${made} />`}
  </main>`;
}
