// The chat app at /: conversations, knowledge bases, "what do you remember about me",
// agent tasks and their schedules.
// The chat page loads with the app; the other pages load when first opened.
import { html, useEffect, useState } from "../vendor/preact.js";
import { boot } from "../core/shell.js";
import { t } from "../core/i18n.js";
import { Loading } from "../core/ui.js";
import { ChatPage } from "./chat.js";

const LAZY = {
  kb: () => import("./kb.js"),
  memory: () => import("./memory.js"),
  tasks: () => import("./tasks.js"),
  schedules: () => import("./schedules.js"),
};

function nav(who) {
  const items = [
    { id: "chat", label: t("app.chat"), href: "#/chat" },
    { id: "kb", label: t("app.kb"), href: "#/kb" },
    { id: "memory", label: t("app.memory"), href: "#/memory" },
    { id: "tasks", label: t("app.tasks"), href: "#/tasks" },
    { id: "schedules", label: t("app.schedules"), href: "#/schedules" },
  ];
  if (who.role === "admin") items.push({ id: "admin", label: t("app.admin"), href: "/admin" });
  return items;
}

function Lazy({ name, ...props }) {
  const [state, setState] = useState({ page: null, error: null });
  useEffect(() => {
    LAZY[name]().then(
      (module) => setState({ page: module.default, error: null }),
      (error) => setState({ page: null, error }),
    );
  }, [name]);
  return state.page ? html`<${state.page} ...${props} />` : html`<${Loading} error=${state.error} />`;
}

function App({ who, route }) {
  const section = route[0] || "chat";
  if (section in LAZY) return html`<${Lazy} name=${section} who=${who} route=${route} />`;
  return html`<${ChatPage} who=${who} route=${route} />`;
}

boot(App, { nav });
