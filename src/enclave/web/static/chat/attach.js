// Attachments made ready in the browser, the way `ask` does (src/enclave/client/imageprep.py):
//
// - an image (PNG, JPEG, WebP, GIF, BMP) whose longest side is at most MAX_SIDE and that is
//   at most SMALL_BYTES is sent as it is;
// - any other image is drawn smaller (longest side MAX_SIDE) on a canvas and re-encoded:
//   PNG when a pixel is transparent (JPEG cannot keep it), else JPEG quality JPEG_QUALITY;
//   when nothing had to shrink and the result is not smaller, the original is sent;
// - a text file up to TEXT_MAX_BYTES is put into the message as a fenced block.
//
// Each becomes {id, kind: "image"|"text", name, ...}: an image carries a data: URL (an
// OpenAI image_url part), a text file its text.
import { t } from "../core/i18n.js";

export const MAX_SIDE = 1568;
export const SMALL_BYTES = 1_000_000;
export const JPEG_QUALITY = 0.85;
export const TEXT_MAX_BYTES = 256 * 1024;

const IMAGE_TYPES = ["image/png", "image/jpeg", "image/webp", "image/gif", "image/bmp"];
const TEXT_NAMES = /\.(txt|md|markdown|csv|tsv|json|jsonl|ya?ml|toml|ini|cfg|conf|log|xml|html?|css|js|mjs|ts|tsx|jsx|py|rb|go|rs|java|kt|c|h|cc|cpp|hpp|cs|php|sh|bash|zsh|ps1|sql|r|swift|scala|lua|pl|tex|rst|env|gitignore|dockerfile)$/i;

let next = 0;

export function human(bytes) {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(0)} KB`;
  return `${(bytes / 1024 / 1024).toFixed(1)} MB`;
}

function dataUrl(blob) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(reader.result);
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(blob);
  });
}

function hasAlpha(context, width, height) {
  const pixels = context.getImageData(0, 0, width, height).data;
  for (let i = 3; i < pixels.length; i += 4) if (pixels[i] < 255) return true;
  return false;
}

function canvasOf(width, height) {
  if (typeof OffscreenCanvas !== "undefined") return new OffscreenCanvas(width, height);
  const canvas = document.createElement("canvas");
  canvas.width = width;
  canvas.height = height;
  return canvas;
}

function encode(canvas, type, quality) {
  if (canvas.convertToBlob) return canvas.convertToBlob({ type, quality });
  return new Promise((resolve) => canvas.toBlob(resolve, type, quality));
}

export async function prepareImage(file, maxSide = MAX_SIDE) {
  let bitmap;
  try {
    bitmap = await createImageBitmap(file, { imageOrientation: "from-image" });
  } catch {
    throw new Error(t("chat.attach.badimage", { name: file.name }));
  }
  const original = [bitmap.width, bitmap.height];
  const known = IMAGE_TYPES.includes(file.type);
  const base = { id: ++next, kind: "image", name: file.name || "image", originalSize: original, originalBytes: file.size };
  if (known && Math.max(...original) <= maxSide && file.size <= SMALL_BYTES) {
    bitmap.close();
    return { ...base, url: await dataUrl(file), size: original, bytes: file.size, changed: false };
  }
  const scale = Math.min(1, maxSide / Math.max(...original));
  const width = Math.max(1, Math.round(original[0] * scale));
  const height = Math.max(1, Math.round(original[1] * scale));
  const canvas = canvasOf(width, height);
  const context = canvas.getContext("2d");
  context.imageSmoothingQuality = "high";
  context.drawImage(bitmap, 0, 0, width, height);
  bitmap.close();
  const transparent = hasAlpha(context, width, height);
  const blob = await encode(canvas, transparent ? "image/png" : "image/jpeg", JPEG_QUALITY);
  if (known && scale === 1 && blob.size >= file.size) {
    return { ...base, url: await dataUrl(file), size: original, bytes: file.size, changed: false };
  }
  return { ...base, url: await dataUrl(blob), size: [width, height], bytes: blob.size, changed: true };
}

async function readText(file) {
  if (file.size > TEXT_MAX_BYTES) {
    throw new Error(t("chat.attach.toobig", { name: file.name, limit: human(TEXT_MAX_BYTES) }));
  }
  const bytes = new Uint8Array(await file.arrayBuffer());
  try {
    const text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
    if (text.includes("\u0000")) throw new Error("binary");
    return text;
  } catch {
    throw new Error(t("chat.attach.notext", { name: file.name }));
  }
}

// One file to an attachment; an Error with a message for the user when it cannot be one.
export async function prepareFile(file) {
  if (file.type.startsWith("image/") && file.type !== "image/svg+xml") return prepareImage(file);
  const likelyText = file.type.startsWith("text/") || /json|xml|yaml|toml|javascript|sql/.test(file.type) || TEXT_NAMES.test(file.name);
  if (!likelyText && file.type) throw new Error(t("chat.attach.notext", { name: file.name }));
  return { id: ++next, kind: "text", name: file.name || "text", text: await readText(file), bytes: file.size };
}

// A fence longer than any run of backticks in the text, so the text cannot close it.
function fenced(name, text) {
  const longest = Math.max(2, ...Array.from(text.matchAll(/`+/g), (m) => m[0].length));
  const fence = "`".repeat(longest + 1);
  const language = (name.match(/\.(\w+)$/) || [])[1] || "";
  return `**${name}**\n${fence}${language}\n${text.replace(/\n$/, "")}\n${fence}`;
}

// The user's message as OpenAI content: a string, or text and image_url parts.
export function contentOf(text, attachments) {
  const files = attachments.filter((a) => a.kind === "text").map((a) => fenced(a.name, a.text));
  const full = [text, ...files].filter(Boolean).join("\n\n");
  const images = attachments.filter((a) => a.kind === "image");
  if (!images.length) return full;
  const parts = full ? [{ type: "text", text: full }] : [];
  return [...parts, ...images.map((a) => ({ type: "image_url", image_url: { url: a.url } }))];
}

// The text of OpenAI content (a string, or its text parts).
export function textOf(content) {
  if (typeof content === "string") return content;
  if (!Array.isArray(content)) return "";
  return content.filter((p) => p && p.type === "text").map((p) => p.text).join("\n");
}

export function imagesOf(content) {
  if (!Array.isArray(content)) return [];
  return content.filter((p) => p && p.type === "image_url").map((p) => p.image_url.url);
}
