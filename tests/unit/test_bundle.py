"""The offline bundle's cheap parts: the lock, the target's platform tags, SHA256SUMS and
install.sh's refusals (a damaged file, the wrong Python), and ``--image`` with no Docker."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from enclave.deploy.bundle import install_script, write_sums
from enclave.deploy.wheelhouse import Target, lock_lines
from enclave.errors import BundleError
from tests.gateway import ENCLAVE


def test_lock_pins_every_wheel_by_name_version_and_hash(tmp_path: Path) -> None:
    wheels = {
        "PyYAML-6.0.2-cp311-cp311-manylinux_2_17_x86_64.whl": b"yaml",
        "annotated_doc-0.0.7-py3-none-any.whl": b"doc",
    }
    for name, data in wheels.items():
        (tmp_path / name).write_bytes(data)
    (tmp_path / "notes.txt").write_text("not a wheel")

    assert lock_lines(tmp_path) == [
        f"annotated-doc==0.0.7 --hash=sha256:{hashlib.sha256(b'doc').hexdigest()}",
        f"pyyaml==6.0.2 --hash=sha256:{hashlib.sha256(b'yaml').hexdigest()}",
    ]


def test_target_accepts_every_manylinux_up_to_its_glibc() -> None:
    target = Target(arch="aarch64", python="3.12", glibc="2.28")
    platforms = target.platforms()
    assert platforms[0] == "manylinux_2_28_aarch64"
    assert "manylinux_2_17_aarch64" in platforms
    assert "manylinux2014_aarch64" in platforms
    assert "manylinux_2_29_aarch64" not in platforms
    args = target.pip_args()
    assert args[:2] == ["--only-binary", ":all:"]
    assert args[args.index("--abi") + 1] == "cp312"
    assert target.name == "linux_aarch64-py3.12"


@pytest.mark.parametrize("glibc", ["2", "2.x", "2.5", "3.1"])
def test_target_refuses_a_glibc_pip_cannot_use(glibc: str) -> None:
    with pytest.raises(BundleError, match="--glibc"):
        Target(glibc=glibc).platforms()


@pytest.mark.parametrize("python", ["3", "311", "python3.11"])
def test_target_refuses_a_python_that_is_not_3_minor(python: str) -> None:
    with pytest.raises(BundleError, match="--python"):
        Target(python=python).pip_args()


def small_bundle(root: Path) -> Path:
    """install.sh, a wheel-shaped file and SHA256SUMS: enough for install.sh's first checks."""
    (root / "wheels").mkdir(parents=True)
    (root / "wheels" / "demo-1.0-py3-none-any.whl").write_bytes(b"demo")
    (root / "requirements.lock").write_text(lock_lines(root / "wheels")[0] + "\n")
    script = root / "install.sh"
    script.write_text(install_script(Target(arch=os.uname().machine)))
    script.chmod(0o755)
    write_sums(root)
    return script


def run_install(script: Path, tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(script), "--prefix", str(tmp_path / "prefix"), "--no-start"],
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), **env},
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def test_sums_list_every_file_but_themselves(tmp_path: Path) -> None:
    small_bundle(tmp_path)
    listed = [line.split("  ", 1)[1] for line in (tmp_path / "SHA256SUMS").read_text().splitlines()]
    assert listed == ["install.sh", "requirements.lock", "wheels/demo-1.0-py3-none-any.whl"]


def test_install_refuses_a_damaged_file_and_names_it(tmp_path: Path) -> None:
    script = small_bundle(tmp_path / "bundle")
    (tmp_path / "bundle" / "wheels" / "demo-1.0-py3-none-any.whl").write_bytes(b"demo!")

    done = run_install(script, tmp_path)

    assert done.returncode == 1
    assert done.stderr.strip() == (
        "install.sh: checksum mismatch: wheels/demo-1.0-py3-none-any.whl: "
        "the bundle is damaged; copy it again"
    )
    assert not (tmp_path / "prefix").exists()


def test_install_refuses_another_python(tmp_path: Path) -> None:
    script = small_bundle(tmp_path / "bundle")
    other = tmp_path / "python3.10"
    other.write_text("#!/bin/sh\necho 3.10\n")
    other.chmod(0o755)

    done = run_install(script, tmp_path, PYTHON=str(other))

    assert done.returncode == 1
    assert done.stderr.strip() == (
        f"install.sh: this bundle needs Python 3.11 but {other} is 3.10; "
        "set PYTHON=/path/to/python3.11"
    )
    assert not (tmp_path / "prefix").exists()


def test_image_without_a_docker_daemon_is_one_line(tmp_path: Path) -> None:
    env = {**os.environ, "DOCKER_HOST": f"unix://{tmp_path}/no-docker.sock"}
    done = subprocess.run(
        [ENCLAVE, "bundle", "--image", "--output", str(tmp_path / "dist")],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 1
    assert done.stderr.startswith("enclave: --image needs ")
    assert len(done.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "dist").exists()


def test_install_without_pip_in_the_bundle_says_so(tmp_path: Path) -> None:
    script = small_bundle(tmp_path / "bundle")  # its one wheel is not pip's

    done = run_install(script, tmp_path, PYTHON=sys.executable)

    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == (
        "install.sh: no pip wheel in wheels/: the bundle is incomplete"
    )
