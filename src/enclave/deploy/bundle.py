"""``enclave bundle``: one archive that installs enclave on a machine with no network.

Layout of the bundle (a directory, then ``enclave-<version>-<target>.tar`` of it)::

    wheels/             every wheel enclave[extras] needs on the target, and pip's own
    requirements.lock   name==version --hash=sha256:… for each wheel (pip --require-hashes)
    models/             GGUF files (``--models``), imported by install.sh
    install.sh          verify, make a venv, install, import models, link, start
    Dockerfile          the container image, built from this directory (``--image``)
    image/              ``docker save`` of that image (``--image`` only)
    README              three lines
    SHA256SUMS          of every other file (``sha256sum -c``)
"""

from __future__ import annotations

import shutil
import tarfile
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from enclave import __version__
from enclave.deploy.wheelhouse import (
    Sources,
    Target,
    build_own_wheel,
    download,
    lock_lines,
    sha256_file,
)
from enclave.errors import BundleError

DEFAULT_EXTRAS = ("engine", "model", "assistants")
SUMS = "SHA256SUMS"

Say = Callable[[str], None]
"""Where progress lines go (stderr in the CLI)."""


@dataclass(frozen=True)
class BundleSpec:
    """What to put in the bundle and where to write it."""

    output: Path
    extras: tuple[str, ...] = DEFAULT_EXTRAS
    target: Target = field(default_factory=Target)
    sources: Sources = field(default_factory=Sources)
    models: tuple[tuple[str, Path], ...] = ()  # (name, GGUF file)
    source_tree: Path | None = None  # enclave's source; None: the tree this runs from
    directory: bool = False  # leave a directory instead of a .tar
    image: bool = False

    @property
    def stem(self) -> str:
        return f"enclave-{__version__}-{self.target.name}"


def build_bundle(spec: BundleSpec, say: Say) -> Path:
    """Write the bundle; its path (the directory, or the ``.tar``) is returned."""
    if spec.image:
        from enclave.deploy.image import require_docker

        require_docker()
    source = spec.source_tree or own_source_tree()
    spec.output.mkdir(parents=True, exist_ok=True)
    final = spec.output / (spec.stem if spec.directory else f"{spec.stem}.tar")
    with tempfile.TemporaryDirectory(prefix=".bundle-", dir=spec.output) as scratch:
        root = Path(scratch) / spec.stem
        _fill(root, spec, source, Path(scratch) / "local", say)
        if spec.image:
            from enclave.deploy.image import build_image

            write_sums(root)
            build_image(root, __version__, say)
        write_sums(root)
        _replace(final)
        if spec.directory:
            root.rename(final)
        else:
            say(f"writing {final}")
            _tar(root, final)
    return final


def own_source_tree() -> Path:
    """The source tree this enclave runs from (an editable or in-tree checkout)."""
    root = Path(__file__).resolve().parents[3]
    if (root / "pyproject.toml").is_file() and (root / "src" / "enclave").is_dir():
        return root
    raise BundleError(
        "this enclave is not run from its source tree; give --source DIR (a checkout of "
        f"enclave {__version__}) to build its wheel"
    )


def write_sums(root: Path) -> None:
    """``SHA256SUMS``: ``<sha256>  <path>`` for every file but itself, in sha256sum's form."""
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.name != SUMS)
    lines = [f"{sha256_file(p)}  {p.relative_to(root).as_posix()}" for p in files]
    (root / SUMS).write_text("\n".join(lines) + "\n", encoding="utf-8")


def install_script(target: Target) -> str:
    """install.sh for ``target``, from the template beside this module."""
    text = resources.files("enclave.deploy").joinpath("install.sh").read_text(encoding="utf-8")
    values = {"@VERSION@": __version__, "@TARGET@": target.name, "@PYTHON@": target.python}
    values["@ARCH@"] = target.arch
    for key, value in values.items():
        text = text.replace(key, value)
    return text


def _fill(root: Path, spec: BundleSpec, source: Path, local: Path, say: Say) -> None:
    wheels = root / "wheels"
    for folder in (wheels, local):
        folder.mkdir(parents=True)
    say(f"building enclave {__version__}'s wheel from {source}")
    own = build_own_wheel(source, local, spec.sources)
    # The wheel's own path, not ``enclave==VERSION``: a package index may hold another
    # project of that name.
    extras = f"[{','.join(spec.extras)}]" if spec.extras else ""
    say(f"downloading the wheels of enclave{extras} for {spec.target.name}")
    download([f"{own}{extras}", "pip"], wheels, spec.target, spec.sources, local)
    lock = lock_lines(wheels)
    (root / "requirements.lock").write_text("\n".join(lock) + "\n", encoding="utf-8")
    _copy_models(root / "models", spec.models, say)
    script = root / "install.sh"
    script.write_text(install_script(spec.target), encoding="utf-8")
    script.chmod(0o755)
    dockerfile = resources.files("enclave.deploy").joinpath("Dockerfile")
    (root / "Dockerfile").write_text(dockerfile.read_text(encoding="utf-8"), encoding="utf-8")
    (root / "README").write_text(_readme(spec), encoding="utf-8")


def _copy_models(folder: Path, models: Sequence[tuple[str, Path]], say: Say) -> None:
    folder.mkdir()
    for name, path in models:
        say(f"adding model {name} ({path})")
        shutil.copyfile(path, folder / f"{name}.gguf")


def _readme(spec: BundleSpec) -> str:
    return (
        f"enclave {__version__} for {spec.target.name}, extras: {','.join(spec.extras)}.\n"
        "Install on a machine with no network: ./install.sh [--prefix DIR] [--no-start]\n"
        "It checks SHA256SUMS first; docs/offline.md in enclave's source tells the rest.\n"
    )


def _replace(final: Path) -> None:
    if final.is_dir():
        shutil.rmtree(final)
    elif final.exists():
        final.unlink()


def _tar(root: Path, final: Path) -> None:
    partial = final.with_name(f".{final.name}.partial")
    with tarfile.open(partial, "w") as tar:
        tar.add(root, arcname=root.name)
    partial.replace(final)


def resolve_models(items: Sequence[str], models_dir: Path) -> tuple[tuple[str, Path], ...]:
    """``--models`` items: a ``.gguf`` path (named by its stem, lowercased) or the name of
    a model in the store (``enclave models import`` / ``prepare``), with its file."""
    from enclave.engine.modelfiles import ModelStore

    store = ModelStore(models_dir)
    found: dict[str, Path] = {}
    for item in items:
        path = Path(item).expanduser()
        if path.suffix.lower() == ".gguf" and path.is_file():
            found[path.stem.lower()] = path
        else:
            found[item] = store.resolve(item)
    return tuple(found.items())
