"""The wheels of an offline bundle: pip, run for a target platform, and the hash-pinned lock.

Everything goes through pip itself (``python -m pip``): ``pip wheel`` builds enclave's own
wheel from its source tree, ``pip download --only-binary :all: --platform …`` fetches every
dependency as a binary wheel for the target (not for the machine building the bundle), and
a package published only as source (jieba) is built into a wheel first, which must then be
pure Python (``-none-any``) to be usable on the target. Where pip looks (``--index-url``,
``--find-links``, ``--no-index``) is the caller's :class:`Sources`, passed through as is.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from packaging.utils import parse_wheel_filename

from enclave.errors import BundleError

OLDEST_MANYLINUX = 17  # manylinux2014 = glibc 2.17, the oldest wheels pip still accepts
MAX_SOURCE_BUILDS = 10  # packages published only as source, built into wheels, per bundle
WHEEL_SOURCES = ("pyproject.toml", "README.md", "src")  # what setuptools reads for the wheel
_CACHES = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
_NOT_FOUND = re.compile(r"No matching distribution found for (\S+)")


@dataclass(frozen=True)
class Target:
    """The machine the bundle installs on: CPU, Python, and the newest glibc it may need."""

    arch: str = "x86_64"
    python: str = "3.11"
    glibc: str = "2.28"

    @property
    def name(self) -> str:
        """``linux_x86_64-py3.11``: part of the bundle's file name."""
        return f"linux_{self.arch}-py{self.python}"

    def platforms(self) -> list[str]:
        """Every manylinux tag a wheel for this target may carry (pip does not widen
        ``manylinux_2_28`` to the older ones by itself)."""
        major, minor = _glibc(self.glibc)
        newest_first = range(minor, OLDEST_MANYLINUX - 1, -1)
        tags = [f"manylinux_{major}_{m}_{self.arch}" for m in newest_first]
        return [*tags, f"manylinux2014_{self.arch}"]

    def pip_args(self) -> list[str]:
        if re.fullmatch(r"3\.\d{1,2}", self.python) is None:
            raise BundleError(f"--python takes 3.MINOR (e.g. 3.11), not {self.python!r}")
        nodot = self.python.replace(".", "")
        args = ["--only-binary", ":all:", "--implementation", "cp"]
        args += ["--python-version", self.python, "--abi", f"cp{nodot}"]
        for platform in self.platforms():
            args += ["--platform", platform]
        return args


@dataclass(frozen=True)
class Sources:
    """Where pip finds packages: passed through to every pip command."""

    index_url: str | None = None
    find_links: tuple[str, ...] = ()
    no_index: bool = False

    def pip_args(self) -> list[str]:
        args = ["--no-index"] if self.no_index else []
        if self.index_url:
            args += ["--index-url", self.index_url]
        for link in self.find_links:
            args += ["--find-links", link]
        return args


def build_own_wheel(source: Path, out: Path, sources: Sources) -> Path:
    """enclave's wheel from its source tree (its build backend comes from ``sources``).

    Built from a clean copy of what the wheel holds, so that nothing left in the tree's
    own ``build/`` (a module deleted since) slips into it."""
    clean = out / ".source"
    _clean_copy(source, clean)
    before = set(out.glob("enclave-*.whl"))
    _pip(["wheel", "--no-deps", "-w", str(out), *sources.pip_args(), str(clean)], "build")
    shutil.rmtree(clean)
    built = sorted(set(out.glob("enclave-*.whl")) - before) or sorted(out.glob("enclave-*.whl"))
    if not built:
        raise BundleError(f"pip built no enclave wheel from {source}")
    return built[-1]


def _clean_copy(source: Path, clean: Path) -> None:
    clean.mkdir(parents=True)
    for name in WHEEL_SOURCES:
        if (source / name).is_dir():
            shutil.copytree(source / name, clean / name, ignore=_CACHES)
        else:
            shutil.copy2(source / name, clean / name)


def download(
    requirements: Sequence[str], out: Path, target: Target, sources: Sources, local: Path
) -> None:
    """Every wheel ``requirements`` need on ``target`` into ``out``; wheels in ``local``
    (enclave's own, and those built from source here) are found there too."""
    wanted = [*sources.pip_args(), "--find-links", str(local), *target.pip_args()]
    for _ in range(MAX_SOURCE_BUILDS + 1):
        done = _pip(["download", "-d", str(out), *wanted, *requirements], "download", check=False)
        if done.returncode == 0:
            return
        missing = _NOT_FOUND.search(done.stderr)
        if missing is None:
            raise BundleError(f"pip download failed: {_last_line(done.stderr)}")
        _wheel_from_source(missing.group(1), local, sources, target)
    raise BundleError(f"more than {MAX_SOURCE_BUILDS} packages have no wheel for {target.name}")


def lock_lines(wheels: Path) -> list[str]:
    """``name==version --hash=sha256:…`` for every wheel in ``wheels``, sorted by name."""
    lines = []
    for wheel in sorted(wheels.glob("*.whl")):
        name, version, _build, _tags = parse_wheel_filename(wheel.name)
        lines.append(f"{name}=={version} --hash=sha256:{sha256_file(wheel)}")
    return sorted(lines)


def sha256_file(path: Path) -> str:
    sha = hashlib.sha256()
    with path.open("rb") as file:
        while block := file.read(2**20):
            sha.update(block)
    return sha.hexdigest()


def _wheel_from_source(requirement: str, local: Path, sources: Sources, target: Target) -> None:
    """A package with no binary wheel: build one here, usable only if it is pure Python."""
    before = set(local.glob("*.whl"))
    args = ["wheel", "--no-deps", "-w", str(local), *sources.pip_args(), requirement]
    done = _pip(args, "wheel", check=False)
    if done.returncode != 0:
        raise BundleError(
            f"{requirement} has no wheel for {target.name} and pip cannot build one: "
            f"{_last_line(done.stderr)}"
        )
    for wheel in sorted(set(local.glob("*.whl")) - before):
        if not wheel.name.endswith("-none-any.whl"):
            wheel.unlink()
            raise BundleError(
                f"{requirement} has no wheel for {target.name}, and building it from source "
                f"gives a platform-specific wheel ({wheel.name}): build it on the target"
            )


def _pip(args: list[str], what: str, *, check: bool = True) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "pip", *args, "--disable-pip-version-check", "-q"]
    try:
        done = subprocess.run(command, capture_output=True, text=True, check=False)
    except OSError as exc:
        raise BundleError(f"cannot run pip ({what}): {exc}") from exc
    if check and done.returncode != 0:
        raise BundleError(f"pip {what} failed: {_last_line(done.stderr)}")
    return done


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("ERROR")]
    return (errors or lines or ["(no output)"])[-1]


def _glibc(text: str) -> tuple[int, int]:
    try:
        major, minor = (int(part) for part in text.split("."))
    except ValueError:
        raise BundleError(f"--glibc takes MAJOR.MINOR (e.g. 2.28), not {text!r}") from None
    if major != 2 or minor < OLDEST_MANYLINUX:
        raise BundleError(f"--glibc must be 2.{OLDEST_MANYLINUX} or newer, not {text}")
    return major, minor
