// The administration console at /admin. Each page is a module loaded when first opened.
import { html, useEffect, useState } from "../vendor/preact.js";
import { boot } from "../core/shell.js";
import { t } from "../core/i18n.js";
import { Loading } from "../core/ui.js";
import "./strings.js";

const PAGES = {
  dashboard: () => import("./dashboard.js"),
  upstreams: () => import("./upstreams.js"),
  users: () => import("./users.js"),
  keys: () => import("./keys.js"),
  assistants: () => import("./assistants.js"),
  memories: () => import("./memories.js"),
  audit: () => import("./audit.js"),
  config: () => import("./config.js"),
};

function nav() {
  const items = Object.keys(PAGES).map((id) => ({ id, label: t(`admin.nav.${id}`), href: `#/${id}` }));
  // Agent tasks live in the chat app, where every user starts and follows their runs
  // (administrators see everyone's there).
  items.push({ id: "tasks", label: t("admin.nav.tasks"), href: "/#/tasks" });
  items.push({ id: "chat", label: t("app.chat"), href: "/" });
  return items;
}

function App({ who, route }) {
  const name = route[0] in PAGES ? route[0] : "dashboard";
  const [state, setState] = useState({ name: null, page: null, error: null });
  useEffect(() => {
    let current = true; // a page opened quickly after another: the slower import is dropped
    PAGES[name]().then(
      (module) => current && setState({ name, page: module.default, error: null }),
      (error) => current && setState({ name, page: null, error }),
    );
    return () => {
      current = false;
    };
  }, [name]);
  if (state.name !== name || !state.page) return html`<${Loading} error=${state.error} />`;
  return html`<${state.page} who=${who} route=${route} />`;
}

boot(App, { nav, admin: true });
