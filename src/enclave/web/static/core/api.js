// The console's one door to the gateway: same origin, JSON, the session, streamed chat.
//
// The access token lives in this module's memory only. The refresh token is an HttpOnly
// cookie the page cannot read; /api/auth/* set, rotate and clear it only for requests
// carrying X-Enclave-CSRF (a header no other site can make a browser send). A 401 refreshes
// once and retries; a failed refresh signs the page out.

const CSRF = { "X-Enclave-CSRF": "1" };
let token = null;
let refreshing = null;
const signedOut = new Set();

export class ApiError extends Error {
  constructor(status, body) {
    const error = (body && body.error) || {};
    super(error.message || (typeof body === "string" && body) || `HTTP ${status}`);
    this.status = status;
    this.type = error.type || "";
    this.code = error.code || "";
    this.param = error.param || null;
  }
}

export function onSignedOut(callback) {
  signedOut.add(callback);
  return () => signedOut.delete(callback);
}

export function hasToken() {
  return token !== null;
}

async function errorOf(response) {
  const text = await response.text();
  try {
    return new ApiError(response.status, JSON.parse(text));
  } catch {
    return new ApiError(response.status, text.slice(0, 300));
  }
}

async function tokens(path, body) {
  const response = await fetch(path, {
    method: "POST",
    headers: { "Content-Type": "application/json", ...CSRF },
    body: JSON.stringify(body),
    credentials: "same-origin",
  });
  if (!response.ok) throw await errorOf(response);
  const answer = await response.json();
  token = answer.access_token;
  return answer;
}

export async function login(username, password) {
  await tokens("/api/auth/login", { username, password });
  return signedIn();
}

// Who the session is, read from the access token's own claims (the gateway signed them):
// no round trip to /api/auth/me on the way to the first page.
export function signedIn() {
  const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
  const claims = JSON.parse(new TextDecoder().decode(Uint8Array.from(atob(part), (c) => c.charCodeAt(0))));
  return { user: claims.sub, role: claims.role, key_prefix: null };
}

// Renew the access token from the cookie; resolves false when there is no session.
// Tabs take turns (a Web Lock): two tabs sending the same cookie at once would look like
// a stolen token being replayed, and the gateway would end the session.
function rotate() {
  const call = () => tokens("/api/auth/refresh", {});
  return navigator.locks ? navigator.locks.request("enclave-refresh", call) : call();
}

export function refresh() {
  refreshing ??= rotate()
    .then(() => true)
    .catch(() => {
      token = null;
      return false;
    })
    .finally(() => {
      refreshing = null;
    });
  return refreshing;
}

export async function logout() {
  try {
    await fetch("/api/auth/logout", { method: "POST", headers: headers(CSRF) });
  } finally {
    token = null;
    signedOut.forEach((callback) => callback());
  }
}

function headers(extra = {}) {
  return token ? { Authorization: `Bearer ${token}`, ...extra } : { ...extra };
}

function url(path, query) {
  if (!query) return path;
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(query)) {
    if (value !== undefined && value !== null && value !== "") params.set(key, value);
  }
  const text = params.toString();
  return text ? `${path}?${text}` : path;
}

// fetch with the session: one refresh and retry on 401; a second 401 signs out.
export async function send(path, options = {}) {
  const { query, json, ...init } = options;
  const prepared = () => {
    const extra = { ...(init.headers || {}) };
    if (json !== undefined) extra["Content-Type"] = "application/json";
    return {
      ...init,
      headers: headers(extra),
      body: json !== undefined ? JSON.stringify(json) : init.body,
    };
  };
  let response = await fetch(url(path, query), prepared());
  if (response.status === 401 && (await refresh())) {
    response = await fetch(url(path, query), prepared());
  }
  if (response.status === 401) {
    token = null;
    signedOut.forEach((callback) => callback());
  }
  if (!response.ok) throw await errorOf(response);
  return response;
}

// JSON in, JSON out: api("/api/kb"), api("/api/kb", {method: "POST", json: {...}}).
export async function api(path, options = {}) {
  const response = await send(path, options);
  if (response.status === 204) return null;
  const type = response.headers.get("content-type") || "";
  return type.includes("json") ? response.json() : response.text();
}

export const me = () => api("/api/auth/me");

// Upload a body with progress (fetch has no upload progress): XMLHttpRequest.
export function upload(path, body, { method = "PUT", onProgress, contentType } = {}) {
  return new Promise((resolve, reject) => {
    const attempt = (retried) => {
      const request = new XMLHttpRequest();
      request.open(method, path);
      for (const [key, value] of Object.entries(headers())) request.setRequestHeader(key, value);
      if (contentType) request.setRequestHeader("Content-Type", contentType);
      request.upload.onprogress = (event) => {
        if (event.lengthComputable && onProgress) onProgress(event.loaded / event.total);
      };
      request.onload = async () => {
        if (request.status === 401 && !retried && (await refresh())) return attempt(true);
        let parsed = request.responseText;
        try {
          parsed = JSON.parse(request.responseText);
        } catch {
          // not JSON: keep the text
        }
        if (request.status >= 200 && request.status < 300) resolve(parsed);
        else reject(new ApiError(request.status, parsed));
      };
      request.onerror = () => reject(new ApiError(0, "network error"));
      request.send(body);
    };
    attempt(false);
  });
}

// A streamed chat completion. Calls onChunk(parsed) per event and returns
// {headers, firstByteMs, doneMs}; throws ApiError for an error body or an error event.
export async function streamChat(body, { signal, conversation, onChunk } = {}) {
  const started = performance.now();
  const extra = conversation ? { "X-Enclave-Conversation": conversation } : {};
  const response = await send("/v1/chat/completions", {
    method: "POST",
    json: { ...body, stream: true, stream_options: { include_usage: true } },
    headers: extra,
    signal,
  });
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  let firstByteMs = null;
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    firstByteMs ??= performance.now() - started;
    buffer += decoder.decode(value, { stream: true });
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const event = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      for (const line of event.split("\n")) {
        if (!line.startsWith("data:")) continue;
        const data = line.slice(5).trim();
        if (data === "[DONE]") continue;
        const chunk = JSON.parse(data);
        if (chunk.error) throw new ApiError(502, chunk);
        onChunk(chunk);
      }
    }
  }
  return { headers: response.headers, firstByteMs, doneMs: performance.now() - started };
}
