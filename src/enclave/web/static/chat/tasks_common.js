// What the Tasks and Schedules pages share: their stylesheet (linked once, on first use),
// a run's status badge and progress bar, the API paths, and how a trigger reads.
import { html } from "../vendor/preact.js";
import { number, t, when } from "../core/i18n.js";
import "./tasks_strings.js";
import "./workspace.js";

if (!document.getElementById("tasks-css")) {
  const link = document.createElement("link");
  link.id = "tasks-css";
  link.rel = "stylesheet";
  link.href = "/ui/chat/tasks.css";
  document.head.append(link);
}

export const STATUSES = ["queued", "running", "succeeded", "failed", "cancelled"];
const TONES = { running: "live", succeeded: "ok", failed: "error", cancelled: "warn" };

export const runPath = (id, rest = "") => `/api/runs/${encodeURIComponent(id)}${rest}`;
export const schedulePath = (id, rest = "") => `/api/schedules/${encodeURIComponent(id)}${rest}`;
export const active = (status) => status === "queued" || status === "running";

export function StatusBadge({ status }) {
  const known = STATUSES.includes(status);
  return html`<span class=${`badge tk-status ${TONES[status] || ""}`} data-testid="run-status" data-status=${status}>
    ${known ? t("tasks.status." + status) : status}
  </span>`;
}

// A run's progress: a bar with its percent (none known yet: an indeterminate bar while it
// is queued or running), and the step's latest message.
export function ProgressBar({ run, percent, message, compact }) {
  const moving = active(run.status);
  let value = run.status === "succeeded" ? 100 : percent;
  if ((value === null || value === undefined) && !moving) value = 0; // ended before any progress
  const known = value !== null && value !== undefined;
  const label = known ? `${Math.round(value)}%` : "…";
  return html`<div class=${`tk-progress ${compact ? "compact" : ""}`} data-testid="run-progress" data-percent=${known ? value : ""}>
    <progress max="100" value=${known ? value : undefined} aria-label=${t("tasks.progress")}></progress>
    <span class="small tk-percent">${label}</span>
    ${!compact && message && html`<span class="small muted tk-message" data-testid="run-progress-message">${message}</span>`}
  </div>`;
}

export function usageText(usage) {
  if (!usage || !usage.total_tokens) return "";
  return t("tasks.usage", { prompt: number(usage.prompt_tokens), completion: number(usage.completion_tokens) });
}

// "every day at 07:00 (Asia/Shanghai)" is beyond a few lines of code: the cron expression
// is shown as written, with its zone.
export function triggerText(trigger) {
  if (!trigger) return "";
  if (trigger.kind === "cron") return t("schedules.trigger.cron", { cron: trigger.cron, zone: trigger.timezone || "UTC" });
  if (trigger.kind === "interval") return t("schedules.trigger.interval", { every: everyText(trigger.every_s) });
  if (trigger.kind === "once") return t("schedules.trigger.once", { when: when(trigger.at) });
  return trigger.kind;
}

export function everyText(seconds) {
  if (seconds % 86400 === 0) return t("schedules.every.days", { n: seconds / 86400 });
  if (seconds % 3600 === 0) return t("schedules.every.hours", { n: seconds / 3600 });
  if (seconds % 60 === 0) return t("schedules.every.minutes", { n: seconds / 60 });
  return t("schedules.every.seconds", { n: seconds });
}

// A task's title in lists: its name, and "built in" for the templates enclave ships.
export function TaskName({ task }) {
  return html`<span class="tk-task-name"
    ><strong>${task.name}</strong>${task.builtin && html` <span class="badge">${t("tasks.builtin")}</span>`}</span
  >`;
}
