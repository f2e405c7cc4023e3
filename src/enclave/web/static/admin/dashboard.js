// The dashboard: requests, errors, tokens, latency and time to first token over a window,
// per model, user or key, from GET /api/admin/stats (the audit log's API records).
import { html, useEffect, useMemo, useState } from "../vendor/preact.js";
import { api } from "../core/api.js";
import { add, lang, number, t } from "../core/i18n.js";
import { Loading, formatMs, useAsync } from "../core/ui.js";
import { Chart } from "./chart.js";
import { PageHead } from "./common.js";

add({
  en: {
    "admin.dash.window": "Window",
    "admin.dash.time": "Time",
    "admin.dash.by": "Group by",
    "admin.dash.by.model": "Model",
    "admin.dash.by.user": "User",
    "admin.dash.by.key": "API key",
    "admin.dash.requests": "Requests",
    "admin.dash.errors": "Errors",
    "admin.dash.tokens_in": "Tokens in",
    "admin.dash.tokens_out": "Tokens out",
    "admin.dash.p50": "Latency p50",
    "admin.dash.p95": "Latency p95",
    "admin.dash.ttft": "TTFT p50",
    "admin.dash.chart.requests": "Requests and errors",
    "admin.dash.chart.tokens": "Tokens",
    "admin.dash.chart.latency": "Latency",
    "admin.dash.chart.ttft": "Time to first token",
    "admin.dash.name": "Name",
    "admin.dash.none": "(none)",
    "admin.dash.truncated": "Busy window: percentiles cover the newest {n} calls.",
    "admin.dash.bucket": "one point per {step}",
    "admin.dash.empty": "No API calls in this window yet.",
  },
  zh: {
    "admin.dash.window": "时间范围",
    "admin.dash.time": "时间",
    "admin.dash.by": "分组",
    "admin.dash.by.model": "模型",
    "admin.dash.by.user": "用户",
    "admin.dash.by.key": "API 密钥",
    "admin.dash.requests": "请求数",
    "admin.dash.errors": "错误数",
    "admin.dash.tokens_in": "输入令牌",
    "admin.dash.tokens_out": "输出令牌",
    "admin.dash.p50": "延迟 p50",
    "admin.dash.p95": "延迟 p95",
    "admin.dash.ttft": "首令牌 p50",
    "admin.dash.chart.requests": "请求与错误",
    "admin.dash.chart.tokens": "令牌",
    "admin.dash.chart.latency": "延迟",
    "admin.dash.chart.ttft": "首令牌时间",
    "admin.dash.name": "名称",
    "admin.dash.none": "（无）",
    "admin.dash.truncated": "此时段调用较多：百分位数仅按最新的 {n} 次调用计算。",
    "admin.dash.bucket": "每 {step} 一个数据点",
    "admin.dash.empty": "此时段内还没有 API 调用。",
  },
});

const WINDOWS = ["1h", "24h", "7d"];
const BY = ["model", "user", "key"];
const REFRESH_MS = 60_000;

function step(seconds) {
  if (seconds % 86400 === 0) return `${seconds / 86400}d`;
  if (seconds % 3600 === 0) return `${seconds / 3600}h`;
  if (seconds % 60 === 0) return `${seconds / 60}m`;
  return `${seconds}s`;
}

const compact = (value) =>
  Math.abs(value) >= 1e6 ? `${(value / 1e6).toFixed(1)}M` : Math.abs(value) >= 1e4 ? `${Math.round(value / 1e3)}k` : `${Math.round(value * 10) / 10}`;

function Segmented({ label, value, options, onChange, name }) {
  return html`<div class="segmented" role="radiogroup" aria-label=${label}>
    ${options.map(
      ([id, text]) => html`<button
        role="radio"
        aria-checked=${value === id}
        class=${value === id ? "on" : ""}
        data-testid=${`${name}-${id}`}
        onClick=${() => onChange(id)}
      >
        ${text}
      </button>`,
    )}
  </div>`;
}

function Cards({ totals }) {
  const cards = [
    ["requests", number(totals.requests)],
    ["errors", number(totals.errors)],
    ["tokens_in", number(totals.tokens_in)],
    ["tokens_out", number(totals.tokens_out)],
    ["p50", formatMs(totals.p50_ms)],
    ["p95", formatMs(totals.p95_ms)],
    ["ttft", formatMs(totals.ttft_p50_ms)],
  ];
  return html`<div class="cards" data-testid="dashboard-totals">
    ${cards.map(
      ([id, value]) => html`<div class=${`card stat ${id === "errors" && totals.errors ? "bad" : ""}`}>
        <div class="stat-label">${t(`admin.dash.${id}`)}</div>
        <div class="stat-value" data-testid=${`total-${id}`}>${value}</div>
      </div>`,
    )}
  </div>`;
}

function charts(stats) {
  const xs = stats.series.map((point) => Date.parse(point.t) / 1000);
  const column = (name) => stats.series.map((point) => point[name] ?? null);
  const ms = (value) => formatMs(value);
  return [
    {
      id: "requests",
      series: [{ label: t("admin.dash.requests") }, { label: t("admin.dash.errors"), color: "--danger" }],
      data: [xs, column("requests"), column("errors")],
      format: compact,
    },
    {
      id: "tokens",
      series: [{ label: t("admin.dash.tokens_in") }, { label: t("admin.dash.tokens_out") }],
      data: [xs, column("tokens_in"), column("tokens_out")],
      format: compact,
    },
    {
      id: "latency",
      series: [{ label: "p50", sparse: true }, { label: "p95", sparse: true }, { label: "p99", sparse: true }],
      data: [xs, column("p50_ms"), column("p95_ms"), column("p99_ms")],
      format: ms,
    },
    {
      id: "ttft",
      series: [{ label: "p50", sparse: true }, { label: "p95", sparse: true }],
      data: [xs, column("ttft_p50_ms"), column("ttft_p95_ms")],
      format: ms,
    },
  ];
}

function Groups({ groups, by }) {
  if (!groups.length) return null;
  return html`<div class="card table-wrap">
    <table data-testid="dashboard-groups">
      <thead>
        <tr>
          <th>${t(`admin.dash.by.${by}`)}</th>
          <th class="num">${t("admin.dash.requests")}</th>
          <th class="num">${t("admin.dash.errors")}</th>
          <th class="num">${t("admin.dash.tokens_in")}</th>
          <th class="num">${t("admin.dash.tokens_out")}</th>
          <th class="num">p50</th>
          <th class="num">p95</th>
          <th class="num">${t("admin.dash.ttft")}</th>
        </tr>
      </thead>
      <tbody>
        ${groups.map(
          (group) => html`<tr>
            <td><code>${group.name ?? t("admin.dash.none")}</code></td>
            <td class="num">${number(group.requests)}</td>
            <td class=${`num ${group.errors ? "error" : ""}`}>${number(group.errors)}</td>
            <td class="num">${number(group.tokens_in)}</td>
            <td class="num">${number(group.tokens_out)}</td>
            <td class="num">${formatMs(group.p50_ms)}</td>
            <td class="num">${formatMs(group.p95_ms)}</td>
            <td class="num">${formatMs(group.ttft_p50_ms)}</td>
          </tr>`,
        )}
      </tbody>
    </table>
  </div>`;
}

export default function Dashboard() {
  const [windowName, setWindow] = useState("24h");
  const [by, setBy] = useState("model");
  const [stats, error, reload] = useAsync(() => api("/api/admin/stats", { query: { window: windowName, by } }), [windowName, by]);
  useEffect(() => {
    // fresh numbers every minute while the page is in view
    const timer = setInterval(() => document.visibilityState === "visible" && reload(), REFRESH_MS);
    return () => clearInterval(timer);
  }, [reload]);
  const plots = useMemo(() => (stats ? charts(stats) : []), [stats, lang]);
  return html`<main class="page admin">
    <${PageHead} title=${t("admin.nav.dashboard")}>
      <${Segmented}
        name="window"
        label=${t("admin.dash.window")}
        value=${windowName}
        onChange=${setWindow}
        options=${WINDOWS.map((w) => [w, w])}
      />
      <${Segmented}
        name="by"
        label=${t("admin.dash.by")}
        value=${by}
        onChange=${setBy}
        options=${BY.map((b) => [b, t(`admin.dash.by.${b}`)])}
      />
      <button onClick=${reload} data-testid="dashboard-refresh">${t("admin.refresh")}</button>
    <//>
    ${!stats
      ? html`<${Loading} error=${error} retry=${reload} />`
      : html`${error && html`<${Loading} error=${error} retry=${reload} />`}
          <${Cards} totals=${stats.totals} />
          <p class="muted small">
            ${t("admin.dash.bucket", { step: step(stats.bucket_s) })}
            ${stats.truncated && html` · <span class="warn">${t("admin.dash.truncated", { n: number(stats.sampled) })}</span>`}
            ${!stats.totals.requests && html` · ${t("admin.dash.empty")}`}
          </p>
          <div class="charts">
            ${plots.map(
              (plot) => html`<section class="card" key=${plot.id}>
                <h2>${t(`admin.dash.chart.${plot.id}`)}</h2>
                <${Chart} timeLabel=${t("admin.dash.time")} testid=${`chart-${plot.id}`} series=${plot.series} data=${plot.data} format=${plot.format} />
              </section>`,
            )}
          </div>
          <${Groups} groups=${stats.groups} by=${by} />`}
  </main>`;
}
