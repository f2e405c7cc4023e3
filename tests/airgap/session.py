"""The scripted session of the zero-egress proof (tests/airgap/test_zero_egress.py).

Run as ``python -m tests.airgap.session HOME RESULT`` inside a network namespace with only
loopback, under strace (``tests.netns.netns_argv``): it prepares the tiny model into HOME,
starts ``enclave serve`` (its own child, so traced too) with the embedded engine, the
embedder and OCR, and uses every part a user meets — chat (streamed and not), embeddings,
an image read by OCR, a knowledge base (upload, search, an assistant's citations), a task
run, and the web console in Chromium — then writes what each step saw to RESULT (JSON).
It asserts nothing: the test reads RESULT and the trace.
"""

from __future__ import annotations

import base64
import functools
import io
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import openai
from openai.types.chat import ChatCompletionMessageParam

from tests.browser.console import ARGS, Guard, open_console, sign_in
from tests.gateway import ENCLAVE, Gateway, add_user, run_gateway
from tests.kbjobs import upload

TINY = "smollm2-135m-instruct"
EMBEDDER = "multilingual-e5-small"
PASSWORD = "an-offline-password"
NOTE = (
    "# Tape library\n\n## Drive seven\n\n"
    "Tape drive number 7 of the Oslo warehouse is reserved for the nightly backup.\n"
)
# Chromium's own calls home, stopped by flags on top of Playwright's (whose feature lists
# already stop network time, optimization hints and search preconnects; ``chromium`` here
# merges ours into them). Seen in this session without them: the component updater asking
# update.googleapis.com for the Optimization Guide model manifest (--disable-component-update
# leaves on-demand components alone: it is sent to the discard port on loopback) and the
# sign-in form's field types asked of content-autofill.googleapis.com.
CHROMIUM_LAUNCHER = Path(__file__).with_name("chromium")
OFFLINE_FLAGS = [
    *ARGS,
    "--disable-features=AutofillServerCommunication",
    "--component-updater=url-source=http://127.0.0.1:9/",
    "--disable-domain-reliability", "--disable-client-side-phishing-detection",
    "--safebrowsing-disable-auto-update", "--metrics-recording-only", "--no-pings",
    "--dns-prefetch-disable",
]  # fmt: skip
CONFIG: dict[str, Any] = {
    "engine": {"model": TINY, "ctx_size": 2048, "parallel": 2, "embeddings": True, "ocr": True},
    "auth": {"mode": "on"},
    "tasks": {"poll_interval_s": 0.2},
    "assistants": [
        {"name": "tiny", "model": TINY, "memory": "off",
         "defaults": {"max_tokens": 12, "temperature": 0}},
        {"name": "notes", "model": TINY, "memory": "off", "knowledge": ["notes"],
         "citations": "field", "retrieval": {"top_k": 1},
         "defaults": {"max_tokens": 12, "temperature": 0}},
    ],
}  # fmt: skip
TASK: dict[str, Any] = {
    "name": "offline-summary", "description": "one model call", "params": {},
    "steps": [{"id": "say", "kind": "llm", "model": TINY, "max_tokens": 12, "temperature": 0,
               "prompt": "Name one colour."}],
}  # fmt: skip
QUESTION: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Name three colors."}]
CHROMIUM_BINARY = "/usr/lib/chromium/chromium"  # what /usr/bin/chromium (a script) runs


def _parent(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[1])


def _descends(pid: int, ancestor: int) -> bool:
    while pid > 1:
        if pid == ancestor:
            return True
        pid = _parent(pid)
    return False


def chromium_threads() -> set[int]:
    """The thread ids (as strace names them) of every Chromium process this one started."""
    found: set[int] = set()
    for entry in Path("/proc").iterdir():
        try:
            pid = int(entry.name)
            if os.readlink(entry / "exe") == CHROMIUM_BINARY and _descends(pid, os.getpid()):
                found |= {int(task.name) for task in (entry / "task").iterdir()}
        except (ValueError, OSError):
            continue  # not a process, or one that is gone
    return found


@functools.cache
def namespace_refused() -> str | None:
    """Why a traced command cannot run in a namespace here (a container without
    CAP_SYS_ADMIN refuses ``unshare -n``, one whose seccomp profile refuses ptrace stops
    strace), or ``None`` when it can; ``tests.netns.unavailable`` only sees the tools."""
    from tests.netns import netns_argv, unavailable

    why = unavailable()
    if why is not None:
        return why
    with tempfile.TemporaryDirectory() as folder:
        done = subprocess.run(netns_argv(["true"], trace=Path(folder) / "trace"),
                              capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    return None if done.returncode == 0 else f"unshare -n under strace fails: {done.stderr}"


def prepare(home: Path) -> None:
    """``enclave models prepare`` of the tiny model, as a user would (in the namespace)."""
    done = subprocess.run(
        [ENCLAVE, "models", "prepare", TINY],
        env={"ENCLAVE_HOME": str(home), "PATH": "/usr/bin:/bin"},
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"enclave models prepare {TINY} failed: {done.stderr}")


def png_with_text(text: str) -> bytes:
    from PIL import Image, ImageDraw, ImageFont

    image = Image.new("RGB", (700, 140), "white")
    ImageDraw.Draw(image).text((20, 40), text, fill="black", font=ImageFont.load_default(size=56))
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


class Session:
    """One signed-in user (an administrator) on the gateway; each step returns what it saw."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        add_user(gateway, "alice", "admin", PASSWORD)
        login = httpx.post(gateway.url + "/api/auth/login", trust_env=False, timeout=60,
                           json={"username": "alice", "password": PASSWORD})  # fmt: skip
        login.raise_for_status()
        self.headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
        self.http = httpx.Client(base_url=gateway.url, headers=self.headers, trust_env=False,
                                 timeout=120)  # fmt: skip
        self.sdk = openai.OpenAI(base_url=gateway.v1, api_key=login.json()["access_token"],
                                 max_retries=0, timeout=120)  # fmt: skip

    def chat(self) -> dict[str, Any]:
        reply = self.sdk.chat.completions.create(
            model=TINY, messages=QUESTION, max_tokens=12, temperature=0
        )
        usage = reply.usage
        return {"model": reply.model, "text": reply.choices[0].message.content,
                "completion_tokens": usage.completion_tokens if usage else 0}  # fmt: skip

    def stream(self) -> dict[str, Any]:
        chunks = list(self.sdk.chat.completions.create(
            model=TINY, messages=QUESTION, max_tokens=12, temperature=0, stream=True,
            stream_options={"include_usage": True},
        ))  # fmt: skip
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        usage = chunks[-1].usage
        return {"chunks": len(chunks), "text": text,
                "completion_tokens": usage.completion_tokens if usage else 0}  # fmt: skip

    def embeddings(self) -> dict[str, Any]:
        reply = self.sdk.embeddings.create(model=EMBEDDER, input=["disk full", "磁盘满了"])
        return {"model": reply.model, "dims": [len(d.embedding) for d in reply.data]}

    def ocr(self) -> dict[str, Any]:
        """An image to a model without vision: its text, read by OCR, joins the prompt."""
        image = base64.b64encode(png_with_text("ERROR 42")).decode()
        part = {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{image}"}}
        plain = [{"type": "text", "text": "Repeat the text."}]
        answers = [
            self.http.post("/v1/chat/completions", json={
                "model": TINY, "max_tokens": 4, "messages": [{"role": "user", "content": c}]})
            for c in (plain, [*plain, part])
        ]  # fmt: skip
        for reply in answers:
            reply.raise_for_status()
        tokens = [r.json()["usage"]["prompt_tokens"] for r in answers]
        return {"header": answers[1].headers.get("x-enclave-ocr"), "prompt_tokens": tokens}

    def knowledge(self) -> dict[str, Any]:
        """A knowledge base: create, upload one note, search it, ask an assistant over it."""
        self.http.post("/api/kb", json={"name": "notes"}).raise_for_status()
        job = upload(self.gateway, self.headers, "notes", "tapes.md", NOTE.encode())
        found = self.http.post("/api/kb/notes/search", json={"query": "tape drive 7", "k": 1})
        found.raise_for_status()
        ask = {"model": "assistant/notes", "messages": [{"role": "user", "content": "Drive 7?"}]}
        answer = self.http.post("/v1/chat/completions", json=ask)
        answer.raise_for_status()
        top = found.json()["data"][0]
        return {"job": job["status"], "added": job["result"]["added"],
                "citation": top["citation"], "text": top["text"],
                "answer_citations": answer.json().get("citations", [])}  # fmt: skip

    def task(self) -> dict[str, Any]:
        started = self.http.post("/api/runs", json={"definition": TASK})
        started.raise_for_status()
        run_id = started.json()["id"]
        deadline = time.monotonic() + 180  # a guard against a hang, not a timing
        while True:
            run: dict[str, Any] = self.http.get(f"/api/runs/{run_id}").raise_for_status().json()
            if run["status"] in ("succeeded", "failed", "cancelled") or time.monotonic() > deadline:
                return {"status": run["status"], "error": run.get("error"),
                        "text": (run.get("result") or {}).get("text")}  # fmt: skip
            time.sleep(0.2)

    def console(self) -> dict[str, Any]:
        """The web console in Chromium: sign in, pick the tiny assistant, send, read."""
        from playwright.sync_api import sync_playwright

        guard = Guard()
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM_LAUNCHER, args=OFFLINE_FLAGS)
            try:
                page = open_console(browser, self.gateway.url, guard)
                sign_in(page, self.gateway.url, "alice", PASSWORD)
                threads = chromium_threads()
                picker = page.get_by_test_id("model-picker")
                picker.locator("option").first.wait_for(state="attached")
                picker.select_option("assistant/tiny")
                page.get_by_test_id("composer").fill("Name three colors.")
                page.get_by_test_id("composer").press("Enter")
                answer = page.locator('[data-testid="message"][data-role="assistant"]').last
                answer.get_by_test_id("message-meta").wait_for(timeout=120_000)
                text = answer.get_by_test_id("message-body").inner_text()
                meta = answer.get_by_test_id("message-meta").inner_text()
                threads |= chromium_threads()
            finally:
                browser.close()
        return {"text": text, "meta": meta, "foreign": guard.foreign, "errors": guard.errors,
                "threads": sorted(threads)}  # fmt: skip


STEPS: list[tuple[str, Callable[[Session], dict[str, Any]]]] = [
    ("chat", Session.chat), ("stream", Session.stream), ("embeddings", Session.embeddings),
    ("ocr", Session.ocr), ("knowledge", Session.knowledge), ("task", Session.task),
    ("console", Session.console),
]  # fmt: skip


def run(home: Path) -> dict[str, Any]:
    """Every step in order; the first failure is recorded (with its traceback) and ends it."""
    seen: dict[str, Any] = {}
    try:
        prepare(home)
        with run_gateway(home, CONFIG, timeout=300) as gateway:
            try:
                session = Session(gateway)
                for name, step in STEPS:
                    seen[name] = step(session)
            except Exception:  # the test shows it, with the gateway's log
                seen["error"] = traceback.format_exc() + gateway.running.log_tail()
    except Exception:  # the model or the gateway did not start
        seen["error"] = traceback.format_exc()
    return seen


def main() -> None:
    home, result = Path(sys.argv[1]), Path(sys.argv[2])
    result.write_text(json.dumps(run(home), ensure_ascii=False, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
