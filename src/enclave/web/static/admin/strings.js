// The admin console's navigation strings; each page module adds its own.
import { add } from "../core/i18n.js";

add({
  en: {
    "admin.nav.dashboard": "Dashboard",
    "admin.nav.upstreams": "Upstreams",
    "admin.nav.users": "Users",
    "admin.nav.keys": "API keys",
    "admin.nav.assistants": "Assistants",
    "admin.nav.memories": "Memories",
    "admin.nav.audit": "Audit log",
    "admin.nav.config": "Configuration",
    "admin.nav.tasks": "Tasks",
  },
  zh: {
    "admin.nav.dashboard": "概览",
    "admin.nav.upstreams": "上游服务",
    "admin.nav.users": "用户",
    "admin.nav.keys": "API 密钥",
    "admin.nav.assistants": "助手",
    "admin.nav.memories": "记忆",
    "admin.nav.audit": "审计日志",
    "admin.nav.config": "配置",
    "admin.nav.tasks": "任务",
  },
});
