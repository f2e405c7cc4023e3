// The form of a task's parameters, made from its definition's `params`: a text box per
// string (a list when it has an `enum`), a number box per integer or number, a checkbox per
// boolean, and JSON for arrays and objects. Defaults fill the boxes; the page checks what
// it can (required, numbers, JSON) and the gateway's 400 names the parameter it refused
// (`params.<name>`), which is shown under that box.
import { html } from "../vendor/preact.js";
import { t } from "../core/i18n.js";

const JSON_TYPES = new Set(["array", "object"]);
const required = (spec) => spec.required ?? !("default" in spec);

// The boxes' first values: each default, as the box holds it.
export function initialValues(params = {}) {
  const values = {};
  for (const [name, spec] of Object.entries(params)) {
    const value = spec.default;
    if (spec.type === "boolean") values[name] = Boolean(value);
    else if (JSON_TYPES.has(spec.type)) values[name] = value === undefined ? "" : JSON.stringify(value, null, 1);
    else values[name] = value === undefined || value === null ? "" : String(value);
  }
  return values;
}

function parse(spec, raw) {
  if (spec.type === "boolean") return { value: Boolean(raw) };
  if (raw === "" || raw === undefined) return { empty: true };
  if (spec.type === "integer" || spec.type === "number") {
    const value = Number(raw);
    const whole = spec.type !== "integer" || Number.isInteger(value);
    return Number.isFinite(value) && whole ? { value } : { error: t(`tasks.form.${spec.type}`) };
  }
  if (JSON_TYPES.has(spec.type)) {
    try {
      const value = JSON.parse(raw);
      const right = spec.type === "array" ? Array.isArray(value) : value && typeof value === "object" && !Array.isArray(value);
      return right ? { value } : { error: t(`tasks.form.${spec.type}`) };
    } catch {
      return { error: t("tasks.form.json") };
    }
  }
  return { value: raw };
}

// The params to send, and what is wrong by name ({} when nothing). An empty optional box
// is left out, so the definition's default applies.
export function collect(params = {}, values = {}) {
  const out = {};
  const errors = {};
  for (const [name, spec] of Object.entries(params)) {
    const found = parse(spec, values[name]);
    if (found.error) errors[name] = found.error;
    else if (found.empty && required(spec)) errors[name] = t("tasks.form.required");
    else if (!found.empty) out[name] = found.value;
  }
  return { params: out, errors };
}

// Which box a refusal is about: "params.since_hours" (or "params.since_hours.type").
export function paramOf(error) {
  const found = /^params\.([^.[\]]+)/.exec(error?.param || "");
  return found ? found[1] : null;
}

function Field({ name, spec, value, error, onValue }) {
  const id = `param-${name}`;
  const common = { id, "data-testid": `param-${name}`, "aria-invalid": error ? "true" : undefined };
  let box;
  if (spec.type === "boolean") {
    box = html`<input type="checkbox" ...${common} checked=${value} onChange=${(e) => onValue(e.target.checked)} />`;
  } else if (spec.enum) {
    box = html`<select ...${common} value=${value} onChange=${(e) => onValue(e.target.value)}>
      ${!required(spec) && html`<option value=""></option>`}
      ${spec.enum.map((choice) => html`<option value=${String(choice)}>${String(choice)}</option>`)}
    </select>`;
  } else if (JSON_TYPES.has(spec.type)) {
    box = html`<textarea ...${common} rows="3" class="tk-json" value=${value} onInput=${(e) => onValue(e.target.value)}></textarea>`;
  } else {
    const numeric = spec.type === "integer" || spec.type === "number";
    box = html`<input
      ...${common}
      type=${numeric ? "number" : "text"}
      step=${spec.type === "integer" ? "1" : numeric ? "any" : undefined}
      required=${required(spec)}
      value=${value}
      onInput=${(e) => onValue(e.target.value)}
    />`;
  }
  return html`<div class=${`tk-field ${spec.type === "boolean" ? "check" : ""}`}>
    <label for=${id}>
      <span><code>${name}</code>${required(spec) && html` <span class="error" title=${t("tasks.form.required")}>*</span>`}</span>
      <span class="muted small">${spec.description || ""}${spec.type !== "string" ? ` (${spec.type})` : ""}</span>
    </label>
    ${box}
    ${error && html`<p class="error small" role="alert" data-testid="param-error">${error}</p>`}
  </div>`;
}

// <ParamsForm params values errors onChange(values) />: the boxes only, inside the
// caller's <form>.
export function ParamsForm({ params = {}, values, errors = {}, onChange }) {
  const names = Object.keys(params);
  if (!names.length) return html`<p class="muted small" data-testid="params-none">${t("tasks.form.none")}</p>`;
  return html`<div class="tk-params" data-testid="params-form">
    ${names.map(
      (name) => html`<${Field}
        key=${name}
        name=${name}
        spec=${params[name]}
        value=${values[name]}
        error=${errors[name]}
        onValue=${(value) => onChange({ ...values, [name]: value })}
      />`,
    )}
  </div>`;
}
