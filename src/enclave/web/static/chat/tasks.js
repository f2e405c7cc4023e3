// The Tasks page (#/tasks): the task templates (the built-in ones and those defined
// through the API), each started from a form made from its parameters; the runs list; and
// one run (#/tasks/RUN_ID) with its live progress (chat/tasks_run.js). Every signed-in
// user starts runs and sees their own; administrators see everyone's.
import { html, useState } from "../vendor/preact.js";
import { api } from "../core/api.js";
import { t } from "../core/i18n.js";
import { go } from "../core/shell.js";
import { Action, Dialog, Loading, toast, useAsync } from "../core/ui.js";
import { TaskName } from "./tasks_common.js";
import { ParamsForm, collect, initialValues, paramOf } from "./tasks_form.js";
import { RunView } from "./tasks_run.js";
import { RunsList } from "./tasks_runs.js";
import { Empty } from "./workspace.js";

function Steps({ steps = [] }) {
  if (!steps.length) return null;
  return html`<ol class="tk-plan small muted" data-testid="task-steps">
    ${steps.map((step) => html`<li>${step.title || step.id} <span class="badge">${step.kind}</span></li>`)}
  </ol>`;
}

function StartDialog({ task, onClose }) {
  const [values, setValues] = useState(() => initialValues(task.params));
  const [errors, setErrors] = useState({});
  const [error, setError] = useState("");
  const [busy, setBusy] = useState(false);
  const submit = async (event) => {
    event.preventDefault();
    const found = collect(task.params, values);
    setErrors(found.errors);
    setError("");
    if (Object.keys(found.errors).length) return;
    setBusy(true);
    try {
      const run = await api("/api/runs", { method: "POST", json: { task: task.name, params: found.params } });
      toast(t("tasks.started", { task: task.name }));
      onClose();
      go("tasks", run.id);
    } catch (failure) {
      const name = paramOf(failure);
      if (name && name in (task.params || {})) setErrors({ [name]: failure.message });
      else setError(failure.message);
      setBusy(false);
    }
  };
  return html`<${Dialog} open=${true} onClose=${onClose} title=${t("tasks.start.title", { task: task.name })}>
    <form class="stack" onSubmit=${submit} data-testid="task-start-form" novalidate>
      ${task.description && html`<p class="tk-desc">${task.description}</p>`}
      <${Steps} steps=${task.steps} />
      <${ParamsForm} params=${task.params} values=${values} errors=${errors} onChange=${setValues} />
      ${error && html`<p class="error" role="alert" data-testid="task-start-error">${error}</p>`}
      <div class="row">
        <a class="small" href=${`#/schedules/new/${encodeURIComponent(task.name)}`} onClick=${onClose}>${t("tasks.start.schedule")}</a>
        <span class="spacer"></span>
        <button type="button" onClick=${onClose}>${t("app.cancel")}</button>
        <button class="primary" data-testid="task-start-submit" disabled=${busy}>${t("tasks.start.submit")}</button>
      </div>
    </form>
  <//>`;
}

function TaskCard({ task, who, onStart, onDeleted }) {
  const mine = !task.builtin && (who.role === "admin" || task.owner === who.user);
  const remove = async () => {
    await api(`/api/tasks/${encodeURIComponent(task.name)}`, { method: "DELETE" });
    toast(t("tasks.deleted", { task: task.name }));
    onDeleted();
  };
  const count = Object.keys(task.params || {}).length;
  return html`<li class="card tk-task" data-testid="task-item" data-name=${task.name}>
    <div class="row">
      <${TaskName} task=${task} />
      <span class="spacer"></span>
      ${mine &&
      html`<${Action}
        class="icon danger"
        testid="task-delete"
        title=${t("tasks.delete", { task: task.name })}
        confirm=${t("tasks.deleteConfirm", { task: task.name })}
        run=${remove}
        >✕<//
      >`}
    </div>
    <p class="tk-desc">${task.description || ""}</p>
    <div class="row tk-task-foot">
      <span class="muted small">
        ${t("tasks.facts", { steps: (task.steps || []).length, params: count })}${task.owner && !task.builtin ? ` · ${task.owner}` : ""}
      </span>
      <span class="spacer"></span>
      <button class="primary" data-testid="task-start" onClick=${() => onStart(task)}>${t("tasks.start.open")}</button>
    </div>
  </li>`;
}

function TasksHome({ who }) {
  const [tasks, error, reload] = useAsync(() => api("/api/tasks"), []);
  const [starting, setStarting] = useState(null);
  const list = tasks?.data || [];
  const shown = list.filter((task) => !task.name.startsWith("kb-ingest")); // started by uploads, not by hand
  return html`<main class="page narrow ws-page" data-testid="tasks-page">
    <div class="row ws-title"><h1>${t("tasks.title")}</h1></div>
    <p class="muted">${t("tasks.intro")}</p>
    <section class="ws-section" aria-labelledby="templates-title">
      <h2 id="templates-title">${t("tasks.templates")}</h2>
      ${!tasks
        ? html`<${Loading} error=${error} retry=${reload} />`
        : shown.length
          ? html`<ul class="tk-tasks" data-testid="task-list">
              ${shown.map(
                (task) => html`<${TaskCard} key=${task.name} task=${task} who=${who} onStart=${setStarting} onDeleted=${reload} />`,
              )}
            </ul>`
          : html`<${Empty} title=${t("tasks.empty.title")} testid="tasks-empty"><p>${t("tasks.empty.body")}</p><//>`}
    </section>
    <${RunsList} who=${who} tasks=${list} />
    ${starting && html`<${StartDialog} key=${starting.name} task=${starting} onClose=${() => setStarting(null)} />`}
  </main>`;
}

export default function TasksPage({ who, route }) {
  return route[1] ? html`<${RunView} key=${route[1]} id=${route[1]} who=${who} />` : html`<${TasksHome} who=${who} />`;
}
