// Markdown to safe HTML: marked (GFM), DOMPurify, highlight.js for code (with a copy
// button), KaTeX for math (imported on the first message that holds math, rendered as
// MathML: no stylesheet, fonts or inline styles, so the CSP holds).
//
// highlight.js (a third of the page's script) is not on the path to the first paint: it
// is imported 1.5 s after the page has loaded, or by the first code block if that comes
// sooner. Until then code shows plain; what was rendered without it renders again
// when it arrives, as for KaTeX (onMath / mathGeneration cover both).
//
// renderMarkdown(text) returns sanitized HTML; finished messages go through memoized()
// (rendered once per text); a streaming message calls renderMarkdown once per frame.
import { marked } from "../vendor/marked.js";
import DOMPurify from "../vendor/purify.js";
import { lang, t } from "../core/i18n.js";

const AUTO_DETECT_MAX = 4000; // characters: guessing a language of longer code costs too much
const CACHE_MAX = 2000; // memoized renderings kept (a 1,000-message conversation fits)

let katex = null; // the module once loaded
let katexLoading = null;
let hljs = null;
let hljsLoading = null;
const mathListeners = new Set();
let mathVersion = 0;

// Called when KaTeX has arrived: messages rendered without it render again.
export function onMath(callback) {
  mathListeners.add(callback);
  return () => mathListeners.delete(callback);
}

// Which KaTeX generation renderings use: it changes once, when KaTeX arrives.
export function mathGeneration() {
  return mathVersion;
}

function arrived() {
  mathVersion += 1;
  cache.clear();
  mathListeners.forEach((callback) => callback(mathVersion));
}

function loadKatex() {
  katexLoading ??= import("../vendor/katex.js").then((module) => {
    katex = module.default;
    arrived();
  });
  return katexLoading;
}

export function loadHighlight() {
  hljsLoading ??= import("../vendor/highlight.js").then((module) => {
    hljs = module.default;
    arrived();
  });
  return hljsLoading;
}

// Well after start (compiling it takes tens of ms on a slow machine), before most answers.
window.addEventListener("load", () => setTimeout(loadHighlight, 1500), { once: true });

function escape(text) {
  return text.replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}

function highlighted(text, language) {
  const name = (language || "").trim().split(/\s+/)[0].toLowerCase();
  if (!hljs) {
    loadHighlight();
    return [escape(text), name];
  }
  try {
    if (name && hljs.getLanguage(name)) return [hljs.highlight(text, { language: name, ignoreIllegals: true }).value, name];
    if (!name && text.length <= AUTO_DETECT_MAX) {
      const found = hljs.highlightAuto(text);
      return [found.value, found.language || ""];
    }
  } catch {
    // an odd grammar edge: show the code plain
  }
  return [escape(text), name];
}

// Math, written the usual ways: $$…$$ and \[…\] (display), $…$ and \(…\) (inline). A
// single $ needs no space inside it and no digit after it, so "$5 and $6" stays text.
const mathExtensions = [
  {
    name: "mathBlock",
    level: "block",
    start: (src) => src.match(/\$\$|\\\[/)?.index,
    tokenizer(src) {
      const found = /^(?:\$\$([\s\S]+?)\$\$|\\\[([\s\S]+?)\\\])[^\S\n]*(?:\n|$)/.exec(src);
      if (found) return { type: "mathBlock", raw: found[0], text: (found[1] ?? found[2]).trim(), display: true };
      return undefined;
    },
    renderer: (token) => mathHtml(token.text, true),
  },
  {
    name: "mathInline",
    level: "inline",
    start: (src) => src.match(/\$|\\\(/)?.index,
    tokenizer(src) {
      const found =
        /^\$\$([^$]+?)\$\$/.exec(src) ||
        /^\\\(([\s\S]+?)\\\)/.exec(src) ||
        /^\$(?![\s$])((?:\\\$|[^$\n])+?)(?<![\s\\])\$(?!\d)/.exec(src);
      if (found) return { type: "mathInline", raw: found[0], text: found[1].trim(), display: found[0].startsWith("$$") };
      return undefined;
    },
    renderer: (token) => mathHtml(token.text, token.display),
  },
];

let pending = []; // KaTeX output of the rendering under way, put in after sanitizing

function mathHtml(tex, display) {
  if (!katex) {
    loadKatex();
    return `<code class="math-source">${escape(tex)}</code>`;
  }
  let out;
  try {
    out = katex.renderToString(tex, { output: "mathml", displayMode: display, throwOnError: false, trust: false });
  } catch {
    return `<code class="math-source">${escape(tex)}</code>`;
  }
  pending.push(out);
  return `<span data-math="${pending.length - 1}"></span>`;
}

const renderer = {
  code(token) {
    const [body, name] = highlighted(token.text, token.lang);
    const label = escape(t("app.copy"));
    const cls = name ? `hljs language-${escape(name)}` : "hljs";
    return `<pre><button type="button" class="copy-code" data-testid="copy-code" aria-label="${label}">${label}</button><code class="${cls}">${body}</code></pre>\n`;
  },
  link(token) {
    const text = this.parser.parseInline(token.tokens);
    const href = escape(token.href || "");
    return `<a href="${href}" target="_blank" rel="noopener noreferrer">${text}</a>`;
  },
};

marked.use({ gfm: true, breaks: false, extensions: mathExtensions, renderer });

const PURIFY = { ADD_ATTR: ["target"], FORBID_TAGS: ["style", "form", "input", "textarea", "select"] };

export function renderMarkdown(text) {
  pending = [];
  let html;
  try {
    html = DOMPurify.sanitize(marked.parse(text || ""), PURIFY);
  } catch {
    html = `<p>${escape(text || "")}</p>`;
  }
  if (pending.length) {
    const maths = pending;
    html = html.replace(/<span data-math="(\d+)"><\/span>/g, (whole, n) => maths[Number(n)] ?? whole);
  }
  pending = [];
  return html;
}

// Whether text may render differently once KaTeX or highlight.js arrives.
export function hasMath(text) {
  return (!hljs && /```|~~~/.test(text)) || /\$\$[\s\S]+?\$\$|\\\[[\s\S]+?\\\]|\\\([\s\S]+?\\\)|\$[^\s$][^$\n]*\$(?!\d)/.test(text);
}

const cache = new Map();

// The rendering of a finished message: computed once per (text, language, math loaded).
export function memoized(text) {
  const key = `${lang}\u0000${mathVersion}\u0000${text}`;
  let html = cache.get(key);
  if (html === undefined) {
    html = renderMarkdown(text);
    if (cache.size >= CACHE_MAX) cache.delete(cache.keys().next().value);
    cache.set(key, html);
  }
  return html;
}
