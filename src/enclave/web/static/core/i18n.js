// Strings in English and Simplified Chinese. Each page module adds its own keys:
//   add({en: {"chat.send": "Send"}, zh: {"chat.send": "发送"}});
// t("chat.send"), t("kb.files", {n: 3}) with {n} placeholders. The language follows the
// browser until the user picks one (kept in localStorage, this browser only).

const STORE = "enclave.lang";
export const LANGUAGES = { en: "English", zh: "中文" };
const strings = { en: {}, zh: {} };
const listeners = new Set();

function initial() {
  const saved = localStorage.getItem(STORE);
  if (saved && saved in LANGUAGES) return saved;
  const wanted = navigator.languages || [navigator.language || "en"];
  return wanted.some((tag) => tag.toLowerCase().startsWith("zh")) ? "zh" : "en";
}

export let lang = initial();
document.documentElement.lang = lang === "zh" ? "zh-CN" : "en";

export function add(dictionaries) {
  for (const [code, entries] of Object.entries(dictionaries)) Object.assign(strings[code], entries);
}

export function t(key, vars) {
  let text = strings[lang][key] ?? strings.en[key] ?? key;
  if (vars) text = text.replace(/\{(\w+)\}/g, (whole, name) => (name in vars ? vars[name] : whole));
  return text;
}

export function setLang(code) {
  if (!(code in LANGUAGES)) return;
  lang = code;
  localStorage.setItem(STORE, code);
  document.documentElement.lang = code === "zh" ? "zh-CN" : "en";
  listeners.forEach((callback) => callback(code));
}

export function onLang(callback) {
  listeners.add(callback);
  return () => listeners.delete(callback);
}

const dates = {};
export function when(iso) {
  if (!iso) return "";
  dates[lang] ??= new Intl.DateTimeFormat(lang === "zh" ? "zh-CN" : "en", {
    dateStyle: "medium",
    timeStyle: "short",
  });
  return dates[lang].format(new Date(iso));
}

export function number(value) {
  return value === null || value === undefined ? "–" : Number(value).toLocaleString(lang === "zh" ? "zh-CN" : "en");
}

add({
  en: {
    "app.name": "enclave",
    "app.chat": "Chat",
    "app.kb": "Knowledge",
    "app.memory": "Memory",
    "app.tasks": "Tasks",
    "app.schedules": "Schedules",
    "app.admin": "Admin",
    "app.signout": "Sign out",
    "app.theme": "Theme",
    "app.theme.light": "Light",
    "app.theme.dark": "Dark",
    "app.theme.auto": "System",
    "app.language": "Language",
    "app.loading": "Loading…",
    "app.retry": "Retry",
    "app.cancel": "Cancel",
    "app.save": "Save",
    "app.delete": "Delete",
    "app.close": "Close",
    "app.confirm": "Are you sure?",
    "app.more": "Load more",
    "app.empty": "Nothing here yet.",
    "app.error": "Something went wrong: {message}",
    "app.copied": "Copied",
    "app.copy": "Copy",
    "app.menu": "Menu",
    "login.title": "Sign in to enclave",
    "login.user": "User name",
    "login.password": "Password",
    "login.submit": "Sign in",
    "login.busy": "Signing in…",
    "login.hint": "Use your company account or an enclave user.",
    "login.failed": "Sign-in failed: {message}",
    "admin.only": "This page is for administrators.",
  },
  zh: {
    "app.name": "enclave",
    "app.chat": "对话",
    "app.kb": "知识库",
    "app.memory": "记忆",
    "app.tasks": "任务",
    "app.schedules": "计划",
    "app.admin": "管理",
    "app.signout": "退出登录",
    "app.theme": "主题",
    "app.theme.light": "浅色",
    "app.theme.dark": "深色",
    "app.theme.auto": "跟随系统",
    "app.language": "语言",
    "app.loading": "加载中…",
    "app.retry": "重试",
    "app.cancel": "取消",
    "app.save": "保存",
    "app.delete": "删除",
    "app.close": "关闭",
    "app.confirm": "确定吗？",
    "app.more": "加载更多",
    "app.empty": "这里还没有内容。",
    "app.error": "出错了：{message}",
    "app.copied": "已复制",
    "app.copy": "复制",
    "app.menu": "菜单",
    "login.title": "登录 enclave",
    "login.user": "用户名",
    "login.password": "密码",
    "login.submit": "登录",
    "login.busy": "正在登录…",
    "login.hint": "使用公司账号或 enclave 用户登录。",
    "login.failed": "登录失败：{message}",
    "admin.only": "此页面仅限管理员访问。",
  },
});
