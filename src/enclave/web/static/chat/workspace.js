// What the Knowledge and Memory pages share: their stylesheet (linked once, on first use),
// sizes in bytes, query terms highlighted in found text.
import { html } from "../vendor/preact.js";
import { lang } from "../core/i18n.js";
import "./workspace_strings.js";

if (!document.getElementById("workspace-css")) {
  const link = document.createElement("link");
  link.id = "workspace-css";
  link.rel = "stylesheet";
  link.href = "/ui/chat/workspace.css";
  document.head.append(link);
}

const UNITS = ["B", "KiB", "MiB", "GiB"];

export function bytes(value) {
  if (value === null || value === undefined) return "–";
  let size = Number(value);
  let unit = 0;
  while (size >= 1024 && unit < UNITS.length - 1) {
    size /= 1024;
    unit += 1;
  }
  const digits = unit === 0 || size >= 100 ? 0 : 1;
  return `${size.toLocaleString(lang === "zh" ? "zh-CN" : "en", { maximumFractionDigits: digits })} ${UNITS[unit]}`;
}

// Words too common to be worth marking in a found passage.
const COMMON = new Set(
  ("a an and are as at be by can do does for from has have how i if in is it its me my of on or " +
    "our so that the their there this to was we what when where which who why will with you your")
    .split(" "),
);
const HAN = /\p{Script=Han}/u;

// The words of a query worth marking: runs of letters and digits of two or more characters
// that are not common words, and every run of Han characters (Chinese has no spaces).
export function termsOf(query) {
  const words = query.toLowerCase().match(/\p{Script=Han}+|(?:(?!\p{Script=Han})[\p{L}\p{N}]){2,}/gu) || [];
  return [...new Set(words.filter((word) => !COMMON.has(word)))].sort((a, b) => b.length - a.length);
}

const escape = (text) => text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
// A word is marked where a word starts ("tea" in "tea" and "teas", not in "steam").
const word = (term) => (HAN.test(term) ? escape(term) : `(?<![\\p{L}\\p{N}])${escape(term)}`);

// `text` with each term of `terms` in a <mark> (no HTML is parsed: the parts are text nodes).
export function Highlight({ text, terms }) {
  if (!terms.length) return text;
  const pattern = new RegExp(`(${terms.map(word).join("|")})`, "giu");
  return text
    .split(pattern)
    .map((part, index) => (index % 2 === 1 ? html`<mark>${part}</mark>` : part));
}

// A page's explanation when it has nothing to list yet.
export function Empty({ title, children, testid }) {
  return html`<div class="ws-empty card" data-testid=${testid}>
    <h2>${title}</h2>
    ${children}
  </div>`;
}
