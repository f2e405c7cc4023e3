"""``enclave bundle --image``: the container image, built from the bundle, saved into it.

The image is built by ``docker build --network none`` from the bundle's own Dockerfile
(install.sh inside, so the image holds exactly the bundle's verified wheels), then
``docker save`` writes it to ``image/enclave-<version>.tar`` for ``docker load`` on site.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

from enclave.errors import BundleError

DOCKER_TIMEOUT_S = 15  # how long `docker version` may take to say whether a daemon answers


def require_docker() -> None:
    """Refuse at once, in one line, when no Docker daemon answers."""
    if shutil.which("docker") is None:
        raise BundleError("--image needs Docker, and the docker command is not installed")
    try:
        done = subprocess.run(
            ["docker", "version", "--format", "{{.Server.Version}}"],
            capture_output=True, text=True, timeout=DOCKER_TIMEOUT_S, check=False,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        raise BundleError(
            f"--image needs a Docker daemon, and none answered within {DOCKER_TIMEOUT_S} s"
        ) from None
    if done.returncode != 0 or not done.stdout.strip():
        why = next((line for line in done.stderr.splitlines() if line.strip()), "no answer")
        raise BundleError(f"--image needs a Docker daemon, and none answers: {why.strip()}")


def build_image(root: Path, version: str, say: Callable[[str], None]) -> Path:
    """Build ``enclave:<version>`` (also tagged ``enclave:latest``, what the Compose files
    run by default) from the bundle ``root`` and save it into ``root/image``."""
    tags = [f"enclave:{version}", "enclave:latest"]
    say(f"building the image {tags[0]} (docker build --network none)")
    dockerfile = str(root / "Dockerfile")
    _docker(
        ["build", "--network", "none", "-t", tags[0], "-t", tags[1], "-f", dockerfile, str(root)]
    )
    saved = root / "image" / f"enclave-{version}.tar"
    saved.parent.mkdir(exist_ok=True)
    say(f"saving {tags[0]} to {saved.name}")
    _docker(["save", "-o", str(saved), *tags])
    return saved


def _docker(args: list[str]) -> None:
    done = subprocess.run(["docker", *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        lines = [line for line in done.stderr.splitlines() if line.strip()] or ["no output"]
        raise BundleError(f"docker {args[0]} failed: {lines[-1].strip()}")
