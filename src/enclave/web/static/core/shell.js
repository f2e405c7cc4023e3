// The frame of both apps: the session (sign-in form until there is one), the top bar with
// its navigation, language and theme, and the hash route (#/kb, #/admin/users...).
import { html, render, useEffect, useState } from "../vendor/preact.js";
import { api, login, logout, onSignedOut, refresh, signedIn } from "./api.js";
import { LANGUAGES, lang, onLang, setLang, t } from "./i18n.js";
import { Toasts } from "./ui.js";

const THEME = "enclave.theme";
const THEMES = ["auto", "light", "dark"];
const darkQuery = window.matchMedia("(prefers-color-scheme: dark)");

export function applyTheme(choice = localStorage.getItem(THEME) || "auto") {
  const dark = choice === "dark" || (choice === "auto" && darkQuery.matches);
  document.documentElement.dataset.theme = dark ? "dark" : "light";
  const light = document.getElementById("hl-light");
  const darkCss = document.getElementById("hl-dark");
  if (light && darkCss) {
    light.disabled = dark;
    darkCss.disabled = !dark;
  }
  return choice;
}
applyTheme();
darkQuery.addEventListener("change", () => applyTheme());

// The current route: "#/kb/docs" -> ["kb", "docs"]; [] for the default page.
export function useRoute() {
  const parse = () => location.hash.replace(/^#\/?/, "").split("/").filter(Boolean).map(decodeURIComponent);
  const [route, setRoute] = useState(parse);
  useEffect(() => {
    const changed = () => setRoute(parse());
    window.addEventListener("hashchange", changed);
    return () => window.removeEventListener("hashchange", changed);
  }, []);
  return route;
}

export function go(...parts) {
  location.hash = "#/" + parts.map(encodeURIComponent).join("/");
}

// Re-render on language change.
function useLang() {
  const [, setCode] = useState(lang);
  useEffect(() => onLang(setCode), []);
}

function LoginForm({ onDone }) {
  const [user, setUser] = useState("");
  const [password, setPassword] = useState("");
  const [error, setError] = useState("");
  const [busy, setBusy] = useState(false);
  const submit = async (event) => {
    event.preventDefault();
    setBusy(true);
    setError("");
    try {
      onDone(await login(user.trim(), password));
    } catch (failure) {
      setError(t("login.failed", { message: failure.message }));
      setBusy(false);
    }
  };
  return html`<main class="login">
    <form class="card" onSubmit=${submit} data-testid="login-form">
      <h1><img src="/ui/core/icon.svg" alt="" width="28" height="28" /> ${t("login.title")}</h1>
      <label
        >${t("login.user")}
        <input
          data-testid="login-user"
          autocomplete="username"
          autofocus
          required
          value=${user}
          onInput=${(e) => setUser(e.target.value)}
      /></label>
      <label
        >${t("login.password")}
        <input
          data-testid="login-password"
          type="password"
          autocomplete="current-password"
          required
          value=${password}
          onInput=${(e) => setPassword(e.target.value)}
      /></label>
      ${error && html`<p class="error" role="alert" data-testid="login-error">${error}</p>`}
      <button class="primary" data-testid="login-submit" disabled=${busy}>
        ${busy ? t("login.busy") : t("login.submit")}
      </button>
      <p class="muted small">${t("login.hint")}</p>
      <${Preferences} />
    </form>
  </main>`;
}

export function Preferences() {
  const [theme, setTheme] = useState(() => localStorage.getItem(THEME) || "auto");
  const pick = (choice) => {
    localStorage.setItem(THEME, choice);
    setTheme(applyTheme(choice));
  };
  return html`<div class="prefs">
    <select
      data-testid="lang-switch"
      aria-label=${t("app.language")}
      value=${lang}
      onChange=${(e) => setLang(e.target.value)}
    >
      ${Object.entries(LANGUAGES).map(([code, name]) => html`<option value=${code}>${name}</option>`)}
    </select>
    <button
      class="icon"
      data-testid="theme-switch"
      title=${`${t("app.theme")}: ${t("app.theme." + theme)}`}
      aria-label=${`${t("app.theme")}: ${t("app.theme." + theme)}`}
      onClick=${() => pick(THEMES[(THEMES.indexOf(theme) + 1) % THEMES.length])}
    >
      ${theme === "dark" ? "☾" : theme === "light" ? "☀" : "◐"}
    </button>
  </div>`;
}

// nav: [{id, label, href}] ; the current one is marked by `current`.
function TopBar({ who, nav, current }) {
  const [open, setOpen] = useState(false);
  return html`<header class="topbar">
    <a class="brand" href="/"><img src="/ui/core/icon.svg" alt="" width="22" height="22" />enclave</a>
    <button class="icon menu-button" aria-label=${t("app.menu")} aria-expanded=${open} onClick=${() => setOpen(!open)}>☰</button>
    <nav class=${open ? "open" : ""} onClick=${() => setOpen(false)}>
      ${nav.map(
        (item) => html`<a
          href=${item.disabled ? undefined : item.href}
          class=${[item.id === current ? "current" : "", item.disabled ? "disabled" : ""].join(" ")}
          aria-current=${item.id === current ? "page" : undefined}
          aria-disabled=${item.disabled ? "true" : undefined}
          title=${item.title}
          data-testid=${`nav-${item.id}`}
          >${item.label}</a
        >`,
      )}
    </nav>
    <span class="spacer"></span>
    <${Preferences} />
    ${who.user &&
    html`<span class="who" title=${who.role}>${who.user}</span>
      <button class="link" data-testid="sign-out" onClick=${logout}>${t("app.signout")}</button>`}
  </header>`;
}

// Find the session: the refresh cookie, else no authentication at all, else sign in.
async function session() {
  if (await refresh()) return signedIn();
  try {
    return await api("/api/auth/me");
  } catch {
    return null;
  }
}

// boot(App, {nav(who) -> items, admin}): App gets {who, route}.
export function boot(App, { nav, admin = false }) {
  function Root() {
    useLang();
    const [who, setWho] = useState(undefined);
    const route = useRoute();
    useEffect(() => {
      session().then(setWho);
      return onSignedOut(() => setWho(null));
    }, []);
    if (who === undefined) return html`<div class="notice muted">${t("app.loading")}</div>`;
    if (who === null) return html`<${LoginForm} onDone=${setWho} /><${Toasts} />`;
    const items = nav(who);
    const current = route[0] || items[0]?.id;
    const forbidden = admin && who.role !== "admin";
    return html`<div class="shell">
      <${TopBar} who=${who} nav=${items} current=${current} />
      ${forbidden
        ? html`<main class="page"><p class="notice error" data-testid="admin-only">${t("admin.only")}</p></main>`
        : html`<${App} who=${who} route=${route} />`}
      <${Toasts} />
    </div>`;
  }
  const root = document.getElementById("app");
  root.textContent = ""; // the "enclave" shown while the scripts load
  root.classList.remove("boot");
  render(html`<${Root} />`, root);
}
