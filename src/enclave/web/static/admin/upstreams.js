// Live upstream health: GET /api/admin/upstreams every few seconds while the page is
// visible. The gateway answers from memory; a failed poll keeps the last state on screen
// with the time it was taken.
import { html, useEffect, useRef, useState } from "../vendor/preact.js";
import { api } from "../core/api.js";
import { add, number, t } from "../core/i18n.js";
import { Loading } from "../core/ui.js";
import { PageHead } from "./common.js";

add({
  en: {
    "admin.up.status": "Gateway: {status}",
    "admin.up.taken": "State at {time}",
    "admin.up.stale": "Could not refresh ({message}); showing the state at {time}.",
    "admin.up.paused": "Paused while the page is hidden",
    "admin.up.pool": "Pool",
    "admin.up.members": "{available} of {n} available",
    "admin.up.inflight": "In flight",
    "admin.up.queued": "Queued",
    "admin.up.member": "Member",
    "admin.up.health": "Health",
    "admin.up.breaker": "Breaker",
    "admin.up.restarts": "Restarts",
    "admin.up.served": "Served",
    "admin.up.failures": "Failures",
    "admin.up.last_error": "Last error",
    "admin.up.retry": "retry in {s} s",
    "admin.up.engine": "Embedded engine",
    "admin.up.engine.state": "{model}: {state}",
    "admin.up.healthy": "healthy",
    "admin.up.unhealthy": "unhealthy",
    "admin.up.none": "No upstreams are configured.",
    "admin.up.standby": "standby",
  },
  zh: {
    "admin.up.status": "网关状态：{status}",
    "admin.up.taken": "状态时间 {time}",
    "admin.up.stale": "刷新失败（{message}）；显示的是 {time} 的状态。",
    "admin.up.paused": "页面隐藏时暂停刷新",
    "admin.up.pool": "资源池",
    "admin.up.members": "{n} 个成员中 {available} 个可用",
    "admin.up.inflight": "处理中",
    "admin.up.queued": "排队",
    "admin.up.member": "成员",
    "admin.up.health": "健康",
    "admin.up.breaker": "熔断器",
    "admin.up.restarts": "重启次数",
    "admin.up.served": "已处理",
    "admin.up.failures": "失败",
    "admin.up.last_error": "最近错误",
    "admin.up.retry": "{s} 秒后重试",
    "admin.up.engine": "内置引擎",
    "admin.up.engine.state": "{model}：{state}",
    "admin.up.healthy": "健康",
    "admin.up.unhealthy": "异常",
    "admin.up.none": "尚未配置上游服务。",
    "admin.up.standby": "备用",
  },
});

const EVERY_MS = 3000;
const STATUS = { ok: "ok", loading: "warn", degraded: "warn", unavailable: "error" };
const BREAKER = { closed: "ok", half_open: "warn", open: "error" };

// Poll while the page is visible; {data, at, error} with the last good answer kept.
function usePoll(path, every) {
  const [state, setState] = useState({ data: null, at: null, error: null });
  const busy = useRef(false);
  useEffect(() => {
    let timer = null;
    let gone = false;
    const tick = async () => {
      if (busy.current || document.visibilityState !== "visible") return;
      busy.current = true;
      try {
        const data = await api(path);
        if (!gone) setState({ data, at: new Date(), error: null });
      } catch (error) {
        if (!gone) setState((old) => ({ ...old, error }));
      } finally {
        busy.current = false;
      }
    };
    const start = () => {
      clearInterval(timer);
      timer = null;
      if (document.visibilityState === "visible") {
        tick();
        timer = setInterval(tick, every);
      }
    };
    start();
    document.addEventListener("visibilitychange", start);
    return () => {
      gone = true;
      clearInterval(timer);
      document.removeEventListener("visibilitychange", start);
    };
  }, [path, every]);
  return state;
}

function Member({ member }) {
  return html`<tr data-testid="upstream-member" data-name=${member.name}>
    <td>
      <strong>${member.name}</strong>
      ${member.standby && html` <span class="badge" data-testid="upstream-standby">${t("admin.up.standby")}</span>`}
      <div class="muted small mono wrap">${member.url}</div>
    </td>
    <td>
      <span class=${`badge ${member.healthy ? "ok" : "error"}`}>
        ${member.healthy ? t("admin.up.healthy") : t("admin.up.unhealthy")}
      </span>
      ${member.state && member.state !== "healthy" && member.state !== "unhealthy" && html` <span class="badge">${member.state}</span>`}
    </td>
    <td>
      <span class=${`badge ${BREAKER[member.breaker] || ""}`}>${member.breaker}</span>
      ${member.breaker !== "closed" && member.retry_in_s > 0 && html`<div class="muted small">${t("admin.up.retry", { s: member.retry_in_s })}</div>`}
    </td>
    <td class="num">${number(member.in_flight)}${member.max_concurrency ? ` / ${member.max_concurrency}` : ""}</td>
    <td class="num">${number(member.queued)}</td>
    <td class="num">${member.restarts ?? "–"}</td>
    <td class="num">${number(member.served)}</td>
    <td class="num">${number(member.failures)}</td>
    <td class="wrap small">${member.last_error ? html`<span class="error">${member.last_error}</span>` : "–"}</td>
  </tr>`;
}

function Pool({ pool }) {
  return html`<section class="card" data-testid="upstream-pool">
    <div class="row">
      <h2>${pool.name}</h2>
      <span class="badge">${pool.kind}</span>
      <span class=${`badge ${pool.available ? "ok" : "error"}`}>
        ${t("admin.up.members", { available: pool.available, n: pool.members.length })}
      </span>
      <span class="muted small">${`${t("admin.up.inflight")}: ${number(pool.in_flight)} · ${t("admin.up.queued")}: ${number(pool.queued)} / ${number(pool.queue_size)}`}</span>
    </div>
    <div class="table-wrap">
      <table>
        <thead>
          <tr>
            <th>${t("admin.up.member")}</th>
            <th>${t("admin.up.health")}</th>
            <th>${t("admin.up.breaker")}</th>
            <th class="num">${t("admin.up.inflight")}</th>
            <th class="num">${t("admin.up.queued")}</th>
            <th class="num">${t("admin.up.restarts")}</th>
            <th class="num">${t("admin.up.served")}</th>
            <th class="num">${t("admin.up.failures")}</th>
            <th>${t("admin.up.last_error")}</th>
          </tr>
        </thead>
        <tbody>
          ${pool.members.map((member) => html`<${Member} key=${member.name} member=${member} />`)}
        </tbody>
      </table>
    </div>
  </section>`;
}

export default function Upstreams() {
  const { data, at, error } = usePoll("/api/admin/upstreams", EVERY_MS);
  const taken = at ? at.toLocaleTimeString() : "";
  return html`<main class="page admin">
    <${PageHead} title=${t("admin.nav.upstreams")}>
      ${data && html`<span class=${`badge ${STATUS[data.status] || ""}`} data-testid="upstreams-status">${t("admin.up.status", { status: data.status })}</span>`}
      ${at && html`<span class="muted small" data-testid="upstreams-taken">${t("admin.up.taken", { time: taken })}</span>`}
    <//>
    ${error && data && html`<p class="notice warn" role="status">${t("admin.up.stale", { message: error.message, time: taken })}</p>`}
    ${!data
      ? html`<${Loading} error=${error} />`
      : html`<div class="stack">
          ${data.engine &&
          html`<section class="card row" data-testid="upstream-engine">
            <h2>${t("admin.up.engine")}</h2>
            <span>${t("admin.up.engine.state", { model: data.engine.model, state: data.engine.state })}</span>
            <span class="muted small">${data.engine.detail}</span>
            <span class="muted small">${t("admin.up.restarts")}: ${data.engine.restarts}${data.engine.pid ? ` · pid ${data.engine.pid}` : ""}</span>
          </section>`}
          ${data.pools.length ? data.pools.map((pool) => html`<${Pool} key=${pool.name} pool=${pool} />`) : html`<p class="muted">${t("admin.up.none")}</p>`}
        </div>`}
  </main>`;
}
