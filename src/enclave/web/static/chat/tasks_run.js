// One run (#/tasks/RUN_ID): its status and progress as they happen (the WebSocket, with a
// ticket; chat/tasks_live.js), its steps, log lines and tool calls, then its result and
// output files; cancel while it is queued or running, retry (a new run of the same task
// and parameters) once it has finished.
import { html, useEffect, useReducer, useState } from "../vendor/preact.js";
import { api } from "../core/api.js";
import { t, when } from "../core/i18n.js";
import { go } from "../core/shell.js";
import { Action, Loading, toast } from "../core/ui.js";
import { ProgressBar, StatusBadge, active, runPath, usageText } from "./tasks_common.js";
import { follow } from "./tasks_live.js";
import { Files, Result } from "./tasks_output.js";

const KEEP_LOG = 1000; // log lines kept in the page (the API has them all)
const KEEP_TOOLS = 200;

const start = (run) => ({
  run,
  percent: run.progress?.percent ?? null,
  message: run.progress?.message ?? "",
  steps: [],
  log: [],
  tools: [],
  live: "connecting",
  note: "",
});

const keep = (list, item, most) => [...list.slice(-(most - 1)), item];

function stepped(steps, event) {
  const old = steps.find((step) => step.id === event.step);
  const step = { ...old, id: event.step, kind: event.kind, order: old?.order ?? event.index,
    status: event.status, title: event.title || old?.title, error: event.error }; // prettier-ignore
  return inOrder([...steps.filter((item) => item.id !== event.step), step]);
}

const inOrder = (steps) => steps.sort((a, b) => (a.order ?? 1e9) - (b.order ?? 1e9));

// The task's steps before they run (pending), in the definition's order.
function planned(steps, plan) {
  const seen = new Map(steps.map((step) => [step.id, step]));
  const made = plan.map((step, order) => ({ id: step.id, kind: step.kind, title: step.title, status: "pending", ...seen.get(step.id), order }));
  const ids = new Set(plan.map((step) => step.id));
  return inOrder([...made, ...steps.filter((step) => !ids.has(step.id))]);
}

// One event into the page's state (pure: a new state each time).
function apply(state, event) {
  const run = state.run;
  switch (event.type) {
    case "status": {
      const line = { id: event.id, at: event.at, level: "status", text: statusLine(event) };
      const next = { ...run, status: event.status, attempt: event.attempt ?? run.attempt };
      return { ...state, run: next, log: keep(state.log, line, KEEP_LOG) };
    }
    case "progress":
      return { ...state, percent: event.percent ?? state.percent, message: event.message ?? state.message };
    case "log":
      return { ...state, log: keep(state.log, { id: event.id, at: event.at, level: event.level || "info", text: event.message }, KEEP_LOG) };
    case "step":
      return { ...state, steps: stepped(state.steps, event) };
    case "tool_call":
      return { ...state, tools: keep(state.tools, event, KEEP_TOOLS) };
    case "result":
      return { ...state, run: { ...run, result: event.result, files: event.files ?? run.files } };
    case "error": {
      const line = { id: event.id, at: event.at, level: "error", text: event.message };
      return { ...state, run: { ...run, error: { message: event.message, type: event.error_type } }, log: keep(state.log, line, KEEP_LOG) };
    }
    default:
      return state;
  }
}

function statusLine(event) {
  const text = t("tasks.status." + event.status);
  const attempt = event.attempt ? ` · ${t("tasks.run.attempt", { n: event.attempt })}` : "";
  return `${text}${attempt}${event.reason ? ` · ${event.reason}` : ""}`;
}

function reducer(state, action) {
  if (action.event) return apply(state, action.event);
  if (action.run) return { ...state, run: { ...state.run, ...action.run } };
  if (action.plan) return { ...state, steps: planned(state.steps, action.plan) };
  return { ...state, live: action.live, note: action.note || "" };
}

const clock = (iso) => (iso ? new Date(iso).toLocaleTimeString() : "");
const STEP_MARK = { pending: "○", started: "◔", done: "✓", failed: "✕" };

function Steps({ steps }) {
  if (!steps.length) return null;
  return html`<section class="card ws-section" aria-labelledby="run-steps-title">
    <h2 id="run-steps-title">${t("tasks.run.steps")}</h2>
    <ol class="tk-steps" data-testid="run-steps">
      ${steps.map(
        (step) => html`<li key=${step.id} class=${`tk-step ${step.status}`} data-testid="run-step" data-step=${step.id} data-status=${step.status}>
          <span class="tk-step-mark" aria-hidden="true">${STEP_MARK[step.status] || "•"}</span>
          <span class="tk-step-title">${step.title || step.id}</span>
          <span class="badge">${step.kind}</span>
          <span class="muted small">${t("tasks.step." + step.status)}</span>
          ${step.error && html`<p class="error small tk-step-error">${step.error}</p>`}
        </li>`,
      )}
    </ol>
  </section>`;
}

function Log({ lines }) {
  if (!lines.length) return null;
  return html`<section class="card ws-section" aria-labelledby="run-log-title">
    <h2 id="run-log-title">${t("tasks.run.log")}</h2>
    <ol class="tk-log" data-testid="run-log">
      ${lines.map(
        (line) => html`<li key=${line.id} class=${`tk-log-${line.level}`} data-testid="run-log-line" data-event=${line.id}>
          <time class="muted" datetime=${line.at}>${clock(line.at)}</time>
          <span class="tk-level">${line.level}</span>
          <span class="tk-log-text">${line.text}</span>
        </li>`,
      )}
    </ol>
  </section>`;
}

const short = (value) => {
  const text = typeof value === "string" ? value : JSON.stringify(value, null, 2);
  return text && text.length > 4000 ? `${text.slice(0, 4000)}…` : text;
};

function Tools({ calls }) {
  if (!calls.length) return null;
  return html`<section class="card ws-section" aria-labelledby="run-tools-title">
    <h2 id="run-tools-title">${t("tasks.run.tools", { n: calls.length })}</h2>
    <ul class="tk-tools" data-testid="run-tools">
      ${calls.map(
        (call) => html`<li key=${call.id} data-testid="run-tool-call">
          <details>
            <summary>
              <code>${call.name}</code> <span class="muted small">${call.step} · ${clock(call.at)}</span>
              ${call.error && html` <span class="badge error">${t("tasks.run.toolFailed")}</span>`}
            </summary>
            <pre class="tk-json-view">${short(call.arguments)}</pre>
            ${call.error ? html`<p class="error small">${call.error}</p>` : call.result !== undefined && html`<pre class="tk-json-view">${short(call.result)}</pre>`}
          </details>
        </li>`,
      )}
    </ul>
  </section>`;
}

function Facts({ run, who }) {
  const parts = [
    who.role === "admin" && run.owner ? t("tasks.run.owner", { owner: run.owner }) : "",
    t("tasks.run.attempt", { n: `${run.attempt}/${run.max_attempts}` }),
    t("tasks.run.createdAt", { when: when(run.created_at) }),
    run.started_at ? t("tasks.run.startedAt", { when: when(run.started_at) }) : "",
    run.finished_at ? t("tasks.run.finishedAt", { when: when(run.finished_at) }) : "",
    usageText(run.usage),
    run.schedule ? t("tasks.run.fromSchedule", { id: run.schedule }) : "",
  ];
  return html`<p class="muted small ws-facts" data-testid="run-facts">
    ${parts.filter(Boolean).join(" · ")}
    ${run.retry_of && html` · <a href=${`#/tasks/${encodeURIComponent(run.retry_of)}`}>${t("tasks.run.retryOf")}</a>`}
  </p>`;
}

function useRunState(id, first) {
  const [state, dispatch] = useReducer(reducer, first, start);
  useEffect(() => {
    api(`/api/tasks/${encodeURIComponent(first.task)}`).then(
      (task) => dispatch({ plan: task.steps || [] }),
      () => {}, // an inline definition, or a task removed since: the steps come with the events
    );
    const stop = follow(id, {
      onEvent: (event) => dispatch({ event }),
      onState: (live, note) => {
        dispatch({ live, note });
        // the stream's end: the stored run has what events do not carry (usage, times)
        if (live === "done") api(runPath(id)).then((run) => dispatch({ run }), () => {});
      },
    });
    return stop;
  }, [id]);
  return [state, dispatch];
}

function Run({ first, who }) {
  const [state, dispatch] = useRunState(first.id, first);
  const run = state.run;
  const cancel = async () => dispatch({ run: await api(runPath(run.id, "/cancel"), { method: "POST" }) });
  const retry = async () => {
    const next = await api(runPath(run.id, "/retry"), { method: "POST" });
    toast(t("tasks.retried"));
    go("tasks", next.id);
  };
  return html`<main class="page narrow ws-page" data-testid="run-view" data-id=${run.id} data-status=${run.status}>
    <a href="#/tasks" class="ws-back" data-testid="run-back">← ${t("tasks.back")}</a>
    <div class="row ws-title">
      <h1>${run.task}</h1>
      <${StatusBadge} status=${run.status} />
      <span class="spacer"></span>
      <span class=${`small tk-live ${state.live}`} data-testid="run-live" data-state=${state.live} title=${state.note}>
        ${t("tasks.live." + state.live)}
      </span>
      ${active(run.status) &&
      html`<${Action} class="danger" testid="run-cancel" disabled=${run.cancel_requested} run=${cancel}>
        ${run.cancel_requested ? t("tasks.run.cancelling") : t("tasks.run.cancel")}
      <//>`}
      ${!active(run.status) && html`<${Action} testid="run-retry" run=${retry}>${t("tasks.run.retry")}<//>`}
    </div>
    <p class="muted small tk-id">${run.id}</p>
    <${Facts} run=${run} who=${who} />
    <${ProgressBar} run=${run} percent=${state.percent} message=${state.message} />
    ${run.error && run.status !== "succeeded" && html`<p class="notice error card" role="alert" data-testid="run-error">${run.error.message}</p>`}
    <${Result} result=${run.result} />
    <${Files} run=${run.id} files=${run.files} />
    <${Steps} steps=${state.steps} />
    <${Tools} calls=${state.tools} />
    <${Log} lines=${state.log} />
  </main>`;
}

export function RunView({ id, who }) {
  const [first, setFirst] = useState(null);
  const [error, setError] = useState(null);
  const load = () => api(runPath(id)).then(setFirst, setError);
  useEffect(() => {
    load();
  }, [id]);
  if (!first) {
    return html`<main class="page narrow ws-page">
      <a href="#/tasks" class="ws-back">← ${t("tasks.back")}</a>
      <${Loading} error=${error} retry=${load} />
    </main>`;
  }
  return html`<${Run} first=${first} who=${who} />`;
}
