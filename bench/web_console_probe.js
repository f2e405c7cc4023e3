// bench/web_console.py's probe: injected by Playwright before the console's own scripts
// (an init script, which the page's CSP does not govern). It records, with the page's own
// clock (performance.now(), 0 = navigation start):
// - when the composer first exists enabled, when it first has focus, when the first
//   conversation-item shows;
// - per streamed read of /v1/chat/completions (armed by the bench): when the bytes arrived
//   (the reader's promise resolved), the last content word they brought, when that word was
//   in the streaming message's DOM (MutationObserver), and when the frame holding it had
//   rendered: a DOM change made inside a frame's requestAnimationFrame phase is painted by
//   that frame, one made by a task (a fetch read, a timer) by the next frame; "rendered" is a
//   task posted from that frame (after its style, layout and paint steps).
(() => {
  const probe = {
    ready: null, focused: null, firstItem: null,
    armed: false, text: "", chunks: [], pending: [],
  };
  window.__bench = probe;

  // --- which phase of the frame we are in -------------------------------------------------
  let inFrame = false;
  const frameEnd = new MessageChannel();
  frameEnd.port1.onmessage = () => {
    inFrame = false;
  };
  const loop = () => {
    inFrame = true;
    frameEnd.port2.postMessage(0);
    requestAnimationFrame(loop);
  };
  requestAnimationFrame(loop);

  const afterFrame = (callback) => {
    const channel = new MessageChannel();
    channel.port1.onmessage = () => callback(performance.now());
    channel.port2.postMessage(0);
  };
  const whenRendered = (callback) => {
    if (inFrame) afterFrame(callback); // painted by this frame
    else requestAnimationFrame(() => afterFrame(callback)); // by the next one
  };

  // --- page milestones -------------------------------------------------------------------
  const composer = () => document.querySelector('[data-testid="composer"]');
  const milestones = new MutationObserver(() => {
    const box = composer();
    if (probe.ready === null && box && !box.disabled) probe.ready = performance.now();
    if (probe.firstItem === null && document.querySelector('[data-testid="conversation-item"]')) {
      probe.firstItem = performance.now();
    }
    if (probe.ready !== null && probe.firstItem !== null) milestones.disconnect();
  });
  milestones.observe(document, { subtree: true, childList: true, attributes: true, attributeFilter: ["disabled"] });
  document.addEventListener(
    "focusin",
    (event) => {
      if (probe.focused === null && event.target === composer()) probe.focused = performance.now();
    },
    true,
  );

  // --- streamed chunks -------------------------------------------------------------------
  const words = (text) => text.split(/\s+/).filter(Boolean);
  const states = new WeakMap();
  const read = ReadableStreamDefaultReader.prototype.read;
  ReadableStreamDefaultReader.prototype.read = function () {
    return read.call(this).then((result) => {
      if (probe.armed && result.value instanceof Uint8Array) arrived(this, result.value);
      return result;
    });
  };

  function arrived(reader, bytes) {
    const at = performance.now();
    let state = states.get(reader);
    if (!state) states.set(reader, (state = { decoder: new TextDecoder(), buffer: "" }));
    state.buffer += state.decoder.decode(bytes, { stream: true });
    let cut;
    let grew = false;
    while ((cut = state.buffer.indexOf("\n\n")) >= 0) {
      const event = state.buffer.slice(0, cut);
      state.buffer = state.buffer.slice(cut + 2);
      for (const line of event.split("\n")) {
        const data = line.startsWith("data:") ? line.slice(5).trim() : "";
        if (!data || data === "[DONE]") continue;
        try {
          const piece = JSON.parse(data).choices?.[0]?.delta?.content;
          if (piece) {
            probe.text += piece;
            grew = true;
          }
        } catch {
          // not a chunk of ours
        }
      }
    }
    const all = words(probe.text);
    if (!grew || !all.length) return;
    const chunk = { at, word: all[all.length - 1], count: all.length, dom: null, painted: null };
    probe.chunks.push(chunk);
    probe.pending.push(chunk);
  }

  let body = null;
  // The streaming message's body; once the stream ended (the page may swap the element),
  // the last answer's.
  const target = () => {
    if (body && body.isConnected) return body;
    const streaming = document.querySelector('[data-streaming="true"]');
    const answers = document.querySelectorAll('[data-testid="message"][data-role="assistant"]');
    const message = streaming || answers[answers.length - 1];
    body = message ? message.querySelector('[data-testid="message-body"]') || message : null;
    return body;
  };
  const shown = new MutationObserver(() => {
    if (!probe.pending.length) return;
    const element = target();
    if (!element) return;
    const now = performance.now();
    const seen = new Set(words(element.textContent));
    const done = probe.pending.filter((chunk) => seen.has(chunk.word));
    if (!done.length) return;
    probe.pending = probe.pending.filter((chunk) => !seen.has(chunk.word));
    for (const chunk of done) chunk.dom = now;
    whenRendered((time) => done.forEach((chunk) => (chunk.painted = time)));
  });

  probe.arm = () => {
    Object.assign(probe, { armed: true, text: "", chunks: [], pending: [] });
    body = null;
    shown.observe(document.body, { subtree: true, childList: true, characterData: true });
  };
  probe.disarm = () => {
    probe.armed = false;
    shown.disconnect();
  };

  // Resolves when `selector`'s element holding `text` is in the viewport: the time of the
  // first frame that shows it (checked at each frame's start, after the previous task's DOM
  // changes, before that frame's paint); rejects after `limit` ms.
  probe.visible = (selector, text, limit = 15000) =>
    new Promise((resolve, reject) => {
      const start = performance.now();
      const check = () => {
        if (performance.now() - start > limit) return reject(new Error(`${text} never showed`));
        const found = [...document.querySelectorAll(selector)].find((el) => el.textContent.includes(text));
        if (found) {
          const box = found.getBoundingClientRect();
          if (box.height > 0 && box.bottom > 0 && box.top < innerHeight) return resolve(performance.now());
        }
        requestAnimationFrame(check);
      };
      check();
    });
})();
