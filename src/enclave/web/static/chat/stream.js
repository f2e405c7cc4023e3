// One streamed chat completion for the chat page: the response headers as soon as they
// come (upstream, queue time), each content delta as it arrives, the usage and citations
// of the last chunks, and the times measured here in the browser (time to first token,
// latency). Aborting `signal` ends the fetch; the gateway then cancels the upstream call.
import { ApiError, send } from "../core/api.js";

export async function stream(body, { conversation, signal, onStart, onDelta, onChunk }) {
  const started = performance.now();
  const response = await send("/v1/chat/completions", {
    method: "POST",
    json: { ...body, stream: true, stream_options: { include_usage: true } },
    headers: { "X-Enclave-Conversation": conversation },
    signal,
  });
  const head = {
    upstream: response.headers.get("x-enclave-upstream"),
    queueMs: Number(response.headers.get("x-enclave-queue-ms")) || null,
  };
  onStart?.(head);
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  let ttftMs = null;
  let done = false;
  const parse = (event) => {
    for (const line of event.split("\n")) {
      if (!line.startsWith("data:")) continue;
      const data = line.slice(5).trim();
      if (data === "[DONE]") {
        done = true;
        continue;
      }
      let chunk;
      try {
        chunk = JSON.parse(data);
      } catch {
        continue;
      }
      if (chunk.error) throw new ApiError(502, chunk);
      onChunk?.(chunk);
      const delta = chunk.choices?.[0]?.delta?.content;
      if (delta) {
        ttftMs ??= performance.now() - started;
        onDelta(delta);
      }
    }
  };
  for (;;) {
    const { value, done: ended } = await reader.read();
    if (ended) break;
    buffer += decoder.decode(value, { stream: true });
    let cut;
    while ((cut = buffer.search(/\r?\n\r?\n/)) >= 0) {
      const event = buffer.slice(0, cut);
      buffer = buffer.slice(cut).replace(/^\r?\n\r?\n/, "");
      parse(event);
    }
  }
  if (buffer.trim()) parse(buffer);
  return { ...head, ttftMs, latencyMs: performance.now() - started, done };
}
