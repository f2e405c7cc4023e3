// The form of a new schedule: which task with which parameters, and when: a cron
// expression in a time zone (the browser's own by default), every N minutes, or once at a
// time. The gateway checks the expression, the zone and the parameters; its 400 names the
// field, and the message is shown under that field.
import { html, useMemo, useState } from "../vendor/preact.js";
import { api } from "../core/api.js";
import { t } from "../core/i18n.js";
import { Dialog } from "../core/ui.js";
import { ParamsForm, collect, initialValues, paramOf } from "./tasks_form.js";

const KINDS = ["cron", "interval", "once"];
const MISSED = ["skip", "once", "all"];
export const browserZone = () => Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";

function zones() {
  const listed = typeof Intl.supportedValuesOf === "function" ? Intl.supportedValuesOf("timeZone") : [];
  return [...new Set(["UTC", browserZone(), ...listed])].sort();
}

// An hour from now, to the minute, as a datetime-local box holds it (local time).
function inAnHour() {
  const at = new Date(Date.now() + 3600_000);
  at.setSeconds(0, 0);
  const local = new Date(at.getTime() - at.getTimezoneOffset() * 60_000);
  return local.toISOString().slice(0, 16);
}

// The POST body's trigger fields, or the error of the one that is wrong.
function trigger(form) {
  if (form.kind === "cron") {
    return form.cron.trim() ? { body: { cron: form.cron.trim(), timezone: form.timezone } } : { field: "cron", error: t("tasks.form.required") };
  }
  if (form.kind === "interval") {
    const minutes = Number(form.minutes);
    const fine = Number.isFinite(minutes) && minutes > 0;
    return fine ? { body: { every_s: Math.round(minutes * 60) } } : { field: "every_s", error: t("schedules.form.minutesBad") };
  }
  const at = new Date(form.at);
  return form.at && !Number.isNaN(at.getTime()) ? { body: { at: at.toISOString() } } : { field: "at", error: t("tasks.form.required") };
}

// Which field a refusal is about: "cron", "timezone", "every_s", "at", "params.x"...
function fieldOf(error) {
  const param = error?.param || "";
  const name = paramOf(error);
  if (name) return { param: name };
  const field = ["cron", "timezone", "every_s", "at", "name", "missed", "task"].find((key) => param === key || param.startsWith(key + "."));
  return field ? { field } : {};
}

function Problem({ text }) {
  return text ? html`<p class="error small" role="alert" data-testid="schedule-field-error">${text}</p>` : null;
}

function When({ form, set, errors }) {
  const zoneList = useMemo(zones, []);
  const box = (key) => (event) => set({ [key]: event.target.value });
  return html`<fieldset class="tk-when">
    <legend>${t("schedules.form.when")}</legend>
    <div class="ws-tabs" role="radiogroup" aria-label=${t("schedules.form.when")}>
      ${KINDS.map(
        (kind) => html`<button
          type="button"
          role="radio"
          aria-checked=${form.kind === kind}
          class=${form.kind === kind ? "current" : ""}
          data-testid=${`schedule-kind-${kind}`}
          onClick=${() => set({ kind })}
        >
          ${t("schedules.kind." + kind)}
        </button>`,
      )}
    </div>
    ${form.kind === "cron" &&
    html`<div class="tk-when-row">
      <label
        >${t("schedules.form.cron")}
        <input data-testid="schedule-cron" class="tk-mono" value=${form.cron} placeholder="0 7 * * 1-5" onInput=${box("cron")} />
        <span class="muted small">${t("schedules.form.cronHint")}</span>
      </label>
      <label
        >${t("schedules.form.timezone")}
        <select data-testid="schedule-timezone" value=${form.timezone} onChange=${box("timezone")}>
          ${zoneList.map((zone) => html`<option value=${zone}>${zone}</option>`)}
        </select>
      </label>
    </div>`}
    ${form.kind === "interval" &&
    html`<label
      >${t("schedules.form.every")}
      <input data-testid="schedule-minutes" type="number" min="1" step="any" value=${form.minutes} onInput=${box("minutes")} />
    </label>`}
    ${form.kind === "once" &&
    html`<label
      >${t("schedules.form.at", { zone: browserZone() })}
      <input data-testid="schedule-at" type="datetime-local" value=${form.at} onInput=${box("at")} />
    </label>`}
    <${Problem} text=${errors.cron || errors.timezone || errors.every_s || errors.at} />
  </fieldset>`;
}

function blank(task) {
  return { task: task?.name || "", name: "", kind: "cron", cron: "", timezone: browserZone(), minutes: "60", at: inAnHour(), missed: "skip" };
}

export function ScheduleDialog({ tasks, task: wanted, onClose, onMade }) {
  const first = tasks.find((task) => task.name === wanted) || tasks[0];
  const [form, setForm] = useState(() => blank(first));
  const [values, setValues] = useState(() => initialValues(first?.params));
  const [errors, setErrors] = useState({});
  const [params, setParamErrors] = useState({});
  const [busy, setBusy] = useState(false);
  const task = tasks.find((item) => item.name === form.task);
  const set = (changes) => setForm({ ...form, ...changes });
  const pick = (name) => {
    set({ task: name });
    setValues(initialValues(tasks.find((item) => item.name === name)?.params));
    setParamErrors({});
  };
  const submit = async (event) => {
    event.preventDefault();
    const when = trigger(form);
    const found = collect(task?.params, values);
    setErrors(when.field ? { [when.field]: when.error } : {});
    setParamErrors(found.errors);
    if (when.field || Object.keys(found.errors).length) return;
    setBusy(true);
    try {
      const body = { task: form.task, params: found.params, missed: form.missed, ...when.body };
      if (form.name.trim()) body.name = form.name.trim();
      onMade(await api("/api/schedules", { method: "POST", json: body }));
    } catch (failure) {
      const where = fieldOf(failure);
      if (where.param) setParamErrors({ [where.param]: failure.message });
      else setErrors({ [where.field || "form"]: failure.message });
      setBusy(false);
    }
  };
  return html`<${Dialog} open=${true} onClose=${onClose} title=${t("schedules.form.title")}>
    <form class="stack" onSubmit=${submit} data-testid="schedule-form" novalidate>
      <label
        >${t("schedules.form.task")}
        <select data-testid="schedule-task" value=${form.task} onChange=${(e) => pick(e.target.value)}>
          ${tasks.map((item) => html`<option value=${item.name}>${item.name}</option>`)}
        </select>
      </label>
      <${Problem} text=${errors.task} />
      <label
        >${t("schedules.form.name")}
        <input data-testid="schedule-name" maxlength="64" value=${form.name} placeholder=${form.task} onInput=${(e) => set({ name: e.target.value })} />
      </label>
      <${Problem} text=${errors.name} />
      <${When} form=${form} set=${set} errors=${errors} />
      <label
        >${t("schedules.form.missed")}
        <select data-testid="schedule-missed" value=${form.missed} onChange=${(e) => set({ missed: e.target.value })}>
          ${MISSED.map((missed) => html`<option value=${missed}>${t("schedules.missed." + missed)}</option>`)}
        </select>
      </label>
      <${Problem} text=${errors.missed} />
      ${task && html`<${ParamsForm} params=${task.params} values=${values} errors=${params} onChange=${setValues} />`}
      ${errors.form && html`<p class="error" role="alert" data-testid="schedule-error">${errors.form}</p>`}
      <div class="row">
        <span class="spacer"></span>
        <button type="button" onClick=${onClose}>${t("app.cancel")}</button>
        <button class="primary" data-testid="schedule-submit" disabled=${busy || !task}>${t("schedules.form.submit")}</button>
      </div>
    </form>
  <//>`;
}
