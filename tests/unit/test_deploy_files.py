"""The deployment files under deploy/ (docs/deploy.md), checked offline.

- Compose: against the Compose specification's JSON schema (the copy that
  check-jsonschema ships), and each gateway's environment plus enclave.yaml loaded by
  enclave's own settings loader, with and without compose.cpu.yaml.
- Kubernetes: every manifest against the Kubernetes schemas that kubernetes-validate
  ships (strict: an unknown field fails), and the gateway's ConfigMap and environment
  loaded by the settings loader.
- nginx.conf: ``nginx -t`` (the compose host names mapped to 127.0.0.1).
- systemd units: ``systemd-analyze verify`` (the binaries mapped to a stand-in).
- The vLLM command of Compose, Kubernetes and systemd: the preset's flags, one for one.

Each check is also run on a broken copy, to show it can fail.
"""

from __future__ import annotations

import copy
import ipaddress
import json
import os
import re
import shlex
import shutil
import subprocess
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
import yaml

from enclave.config import Settings, load_settings
from enclave.deploy import presets

pytestmark = pytest.mark.usefixtures("clean_env")

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
COMPOSE = DEPLOY / "compose"
K8S = DEPLOY / "k8s"
SYSTEMD = DEPLOY / "systemd"
K8S_VERSIONS = ("1.30", "1.37")  # the oldest release we claim, and the newest schema shipped
VLLM_PRESET = "qwen2.5-7b-awq"
SECRETS = {
    "POSTGRES_PASSWORD": "pg-secret",
    "REDIS_PASSWORD": "redis-secret",
    "VLLM_API_KEY": "vllm-secret",
}
GATEWAYS = ("enclave-1", "enclave-2")


def read_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


# --- Compose ---------------------------------------------------------------------------


def compose_schema() -> dict[str, Any]:
    try:
        vendor = resources.files("check_jsonschema.builtin_schemas.vendor")
    except ModuleNotFoundError:
        pytest.skip("check-jsonschema (dev extra) is not installed: no Compose schema")
    schema: dict[str, Any] = json.loads(vendor.joinpath("compose-spec.json").read_text())
    return schema


def compose_errors(document: Any) -> list[str]:
    import jsonschema

    schema = compose_schema()
    validator = jsonschema.validators.validator_for(schema)(schema)
    return [
        f"{'.'.join(map(str, e.absolute_path))}: {e.message}"
        for e in validator.iter_errors(document)
    ]


_VARIABLE = re.compile(r"\$\{(\w+)(?::([-?])([^}]*))?\}")


def interpolate(text: str, env: dict[str, str]) -> str:
    """Compose's ``${NAME}``, ``${NAME:-default}`` and ``${NAME:?message}``."""

    def value(match: re.Match[str]) -> str:
        name, kind, rest = match.groups()
        if env.get(name):
            return env[name]
        if kind == "-":
            return rest
        raise AssertionError(f"${{{name}}} is unset: {rest or 'no default'}")

    return _VARIABLE.sub(value, text)


def compose_services(*files: str) -> dict[str, Any]:
    """The services of ``files`` merged as ``docker compose -f A -f B`` does for what
    these files use (environment maps merged, other keys replaced)."""
    services: dict[str, Any] = {}
    for name in files:
        for service, body in read_yaml(COMPOSE / name)["services"].items():
            merged = services.setdefault(service, {})
            for key, value in body.items():
                if key == "environment":
                    merged[key] = {**merged.get(key, {}), **value}
                else:
                    merged[key] = copy.deepcopy(value)
    return services


def gateway_settings(environment: dict[str, str], config: Path, mp: pytest.MonkeyPatch) -> Settings:
    for key, value in environment.items():
        mp.setenv(key, value)
    try:
        return load_settings(config)
    finally:
        for key in environment:
            mp.delenv(key)


@pytest.mark.parametrize("name", ["compose.yaml", "compose.cpu.yaml"])
def test_compose_files_match_the_compose_specification(name: str) -> None:
    assert compose_errors(read_yaml(COMPOSE / name)) == []


def test_a_compose_file_with_a_mistake_fails_the_schema() -> None:
    broken = read_yaml(COMPOSE / "compose.yaml")
    broken["services"]["postgres"]["healthcheck"]["intervall"] = "5s"
    broken["services"]["redis"]["depends_on"] = "postgres"
    errors = compose_errors(broken)
    assert any("'intervall'" in e for e in errors)
    assert any(e.startswith("services.redis") for e in errors)


def gateway_env(service: dict[str, Any]) -> dict[str, str]:
    return {k: interpolate(str(v), SECRETS) for k, v in service["environment"].items()}


def test_compose_gateways_run_the_image_on_shared_state(monkeypatch: pytest.MonkeyPatch) -> None:
    services = compose_services("compose.yaml")
    config = COMPOSE / "enclave.yaml"
    witnesses, logs = set(), set()
    for name in GATEWAYS:
        service = services[name]
        assert service["image"] == "enclave:${ENCLAVE_VERSION:-latest}"
        assert [*service["entrypoint"], *service["command"]] == ["enclave", "serve"]
        assert "/health" in " ".join(service["healthcheck"]["test"])
        assert f"./{config.name}:/etc/enclave/enclave.yaml:ro" in service["volumes"]
        settings = gateway_settings(gateway_env(service), config, monkeypatch)
        assert settings.database == "postgresql+asyncpg://enclave:pg-secret@postgres:5432/enclave"
        assert settings.auth.rate_limits == "redis"
        assert settings.auth.redis_url == "redis://:redis-secret@redis:6379/0"
        assert settings.auth.mode == "on"
        assert not settings.engine.enabled
        [vllm] = settings.upstreams
        assert vllm.base_url == "http://vllm:8000/v1"
        assert vllm.api_key is not None
        assert vllm.api_key.get_secret_value() == "vllm-secret"
        assert settings.audit.witness_file is not None
        folder = str(settings.audit.witness_file.parent)
        [volume] = [v.split(":")[0] for v in service["volumes"] if v.split(":")[1] == folder]
        witnesses.add(volume)
        logs.add(settings.logs_dir)
    assert len(witnesses) == len(GATEWAYS)  # each replica its own witness, on its own volume
    assert len(logs) == len(GATEWAYS)  # and its own access.log and engine.log


def test_compose_cpu_override_serves_the_embedded_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    services = compose_services("compose.yaml", "compose.cpu.yaml")
    for name in GATEWAYS:
        env = gateway_env(services[name])
        settings = gateway_settings(env, COMPOSE / "enclave.yaml", monkeypatch)
        assert settings.engine.enabled
        assert settings.engine.model == "qwen2.5-coder-1.5b-instruct"
        assert settings.upstreams == []
        assert settings.auth.rate_limits == "redis"


def test_compose_nginx_is_the_trusted_proxy_of_the_gateways() -> None:
    compose = read_yaml(COMPOSE / "compose.yaml")
    address = compose["services"]["nginx"]["networks"]["backend"]["ipv4_address"]
    subnet = compose["networks"]["backend"]["ipam"]["config"][0]["subnet"]
    assert ipaddress.ip_address(address) in ipaddress.ip_network(subnet)
    trusted = read_yaml(COMPOSE / "enclave.yaml")["auth"]["trusted_proxies"]
    assert any(ipaddress.ip_address(address) in ipaddress.ip_network(t) for t in trusted)
    assert compose["networks"]["backend"]["internal"] is True  # no route out
    upstreams = re.findall(r"server (\S+):8000", (COMPOSE / "nginx.conf").read_text())
    assert upstreams == list(GATEWAYS)


# --- the vLLM command --------------------------------------------------------------------


def preset_argv() -> list[str]:
    launch = presets.build(presets.get_preset(VLLM_PRESET), api_key=False)
    words = [launch.model_path]
    for flag in launch.flags:
        words += [flag.name] if flag.value is None else [flag.name, flag.value]
    return words


def compose_vllm() -> tuple[list[str], dict[str, str]]:
    vllm = read_yaml(COMPOSE / "compose.yaml")["services"]["vllm"]
    assert vllm["profiles"] == ["gpu"]
    assert vllm["entrypoint"] == ["vllm", "serve"]
    return vllm["command"], vllm["environment"]


def k8s_vllm() -> tuple[list[str], dict[str, str]]:
    deployment = next(d for d in read_yaml_all(K8S / "vllm.yaml") if d["kind"] == "Deployment")
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["vllm", "serve"]
    gpus = container["resources"]["limits"]["nvidia.com/gpu"]
    assert gpus == presets.get_preset(VLLM_PRESET).tensor_parallel_size
    env = {e["name"]: e.get("value", "") for e in container["env"]}
    return container["args"], env


def systemd_vllm() -> tuple[list[str], dict[str, str]]:
    text = (SYSTEMD / "vllm.service").read_text().replace("\\\n", " ")
    [start] = [line for line in text.splitlines() if line.startswith("ExecStart=")]
    argv = shlex.split(start.removeprefix("ExecStart="))
    assert argv[1] == "serve"
    env = dict(
        line.removeprefix("Environment=").split("=", 1)
        for line in text.splitlines()
        if line.startswith("Environment=")
    )
    return [argv[2].replace("/srv/models/", "/models/"), *argv[3:]], env


@pytest.mark.parametrize("where", [compose_vllm, k8s_vllm, systemd_vllm])
def test_vllm_is_started_with_the_presets_command(where: Any) -> None:
    argv, env = where()
    assert argv == preset_argv()
    for setting in presets.OFFLINE_ENV:
        assert env[setting.name] == setting.value
    assert (
        presets.API_KEY_ENV in env
        or "EnvironmentFile=/etc/vllm/vllm.env" in (SYSTEMD / "vllm.service").read_text()
    )


# --- Kubernetes --------------------------------------------------------------------------


def read_yaml_all(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d]


def manifests() -> list[dict[str, Any]]:
    resources_ = read_yaml(K8S / "kustomization.yaml")["resources"]
    return [doc for name in resources_ for doc in read_yaml_all(K8S / name)]


def k8s_errors(document: dict[str, Any]) -> list[str]:
    try:
        import kubernetes_validate
    except ModuleNotFoundError:
        pytest.skip("kubernetes-validate (dev extra) is not installed: no Kubernetes schemas")
    errors = []
    for version in K8S_VERSIONS:
        try:
            kubernetes_validate.validate(document, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            errors.append(f"{version}: {'.'.join(map(str, exc.path))}: {exc.message}")
    return errors


def test_kustomization_lists_every_manifest() -> None:
    listed = set(read_yaml(K8S / "kustomization.yaml")["resources"])
    assert listed == {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}


def test_k8s_manifests_match_the_kubernetes_schemas() -> None:
    documents = manifests()
    kinds = {d["kind"] for d in documents}
    assert {"Deployment", "Service", "ConfigMap", "Secret", "PodDisruptionBudget"} <= kinds
    assert "NetworkPolicy" in kinds
    for document in documents:
        assert k8s_errors(document) == [], document["metadata"]["name"]


def test_a_manifest_with_a_mistake_fails_the_schema() -> None:
    deployment = next(d for d in manifests() if d["kind"] == "Deployment")
    broken = copy.deepcopy(deployment)
    broken["spec"]["replicas"] = "two"
    assert k8s_errors(broken)
    broken = copy.deepcopy(deployment)
    broken["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    assert k8s_errors(broken)  # strict: an unknown field is an error


def gateway_deployment() -> dict[str, Any]:
    return next(d for d in read_yaml_all(K8S / "gateway.yaml") if d["kind"] == "Deployment")


def container_env(container: dict[str, Any]) -> dict[str, str]:
    """The container's environment as the kubelet gives it: secrets from secret.yaml, the
    pod's name, ``$(VAR)`` references expanded."""
    secret = read_yaml(K8S / "secret.yaml")["stringData"]
    env: dict[str, str] = {}
    for item in container["env"]:
        source = item.get("valueFrom", {})
        if "secretKeyRef" in source:
            value = secret[source["secretKeyRef"]["key"]]
        elif "fieldRef" in source:
            value = "enclave-7d9c-x2x4q"
        else:
            value = re.sub(r"\$\((\w+)\)", lambda m: env[m.group(1)], item["value"])
        env[item["name"]] = value
    return env


def test_k8s_gateway_loads_its_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    spec = gateway_deployment()["spec"]["template"]["spec"]
    [container] = spec["containers"]
    assert container["command"] + container["args"] == ["enclave", "serve"]
    config = tmp_path / "enclave.yaml"
    config.write_text(read_yaml(K8S / "configmap.yaml")["data"]["enclave.yaml"])
    env = container_env(container)
    assert env.pop("ENCLAVE_CONFIG") == "/etc/enclave/enclave.yaml"
    settings = gateway_settings(env, config, monkeypatch)
    assert settings.database.startswith("postgresql+asyncpg://")
    assert settings.auth.rate_limits == "redis"
    assert settings.audit.witness_file == Path(
        "/var/lib/enclave/witness/enclave-7d9c-x2x4q.witness"
    )
    assert settings.logs_dir == Path("/var/lib/enclave/logs/enclave-7d9c-x2x4q")
    [vllm] = settings.upstreams
    service = next(d for d in read_yaml_all(K8S / "vllm.yaml") if d["kind"] == "Service")
    assert vllm.base_url == f"http://{service['metadata']['name']}:8000/v1"


def test_k8s_probes_ask_health() -> None:
    for path in (K8S / "gateway.yaml", K8S / "vllm.yaml"):
        deployment = next(d for d in read_yaml_all(path) if d["kind"] == "Deployment")
        [container] = deployment["spec"]["template"]["spec"]["containers"]
        for probe in ("startupProbe", "readinessProbe"):
            assert container[probe]["httpGet"]["path"] == "/health", (path.name, probe)


def test_k8s_egress_is_denied_but_for_the_gateways_backends() -> None:
    policies = {d["metadata"]["name"]: d["spec"] for d in read_yaml_all(K8S / "networkpolicy.yaml")}
    deny = policies["default-deny-egress"]
    assert deny == {"podSelector": {}, "policyTypes": ["Egress"]}  # no rule: nothing allowed
    allowed = policies["enclave-egress"]
    gateway_labels = gateway_deployment()["spec"]["template"]["metadata"]["labels"]
    assert allowed["podSelector"]["matchLabels"].items() <= gateway_labels.items()
    ports = sorted(p["port"] for rule in allowed["egress"] for p in rule["ports"])
    assert ports == [53, 53, 5432, 6379, 8000]
    assert all(rule.get("to") for rule in allowed["egress"])  # never "anywhere"


# --- nginx -------------------------------------------------------------------------------


def nginx_test(conf: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    nginx = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/sbin")
    if nginx is None:
        pytest.skip("nginx is not installed (./task test installs it: apt-get install nginx-light)")
    mapped = re.sub(r"server enclave-\d+:", "server 127.0.0.1:", conf)
    path = tmp_path / "nginx.conf"
    path.write_text(mapped)
    argv = [nginx, "-t", "-p", str(tmp_path), "-c", str(path), "-e", str(tmp_path / "error.log")]
    argv += ["-g", f"pid {tmp_path / 'nginx.pid'};"]
    return subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)


def test_compose_nginx_conf_passes_nginx_t(tmp_path: Path) -> None:
    result = nginx_test((COMPOSE / "nginx.conf").read_text(), tmp_path)
    assert result.returncode == 0, result.stderr


def test_a_broken_nginx_conf_fails_nginx_t(tmp_path: Path) -> None:
    conf = (
        (COMPOSE / "nginx.conf")
        .read_text()
        .replace("proxy_next_upstream_tries 3;", "proxy_next_upstream_tries;")
    )
    result = nginx_test(conf, tmp_path)
    assert result.returncode != 0
    assert "proxy_next_upstream_tries" in result.stderr


def test_nginx_conf_has_the_directives_every_enclave_nginx_uses() -> None:
    conf = " ".join((COMPOSE / "nginx.conf").read_text().split())
    for directive in (
        "proxy_http_version 1.1;",
        "keepalive 64;",
        "proxy_buffering off;",
        "proxy_request_buffering off;",
        "proxy_read_timeout 3600s;",
        "proxy_next_upstream error timeout;",
        "proxy_next_upstream_tries 3;",
        "location = /api/tasks/ws { proxy_pass http://enclave;",
        "proxy_set_header Upgrade $http_upgrade;",
        'proxy_set_header Connection "upgrade";',
        "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;",
        "proxy_set_header X-Forwarded-Proto $scheme;",
    ):
        assert directive in conf, directive


def test_nginx_never_passes_a_call_on_for_the_gateways_own_502_503() -> None:
    # The gateway's 502/503 describe its model servers; with max_fails=1 they would take
    # healthy replicas out of the pool. Only a refused connection or a timeout may.
    conf = (COMPOSE / "nginx.conf").read_text()
    [line] = re.findall(r"^\s*proxy_next_upstream\s[^;]*;", conf, re.MULTILINE)
    assert line.split() == ["proxy_next_upstream", "error", "timeout;"]


def test_the_tests_nginx_is_the_shipped_config(tmp_path: Path) -> None:
    from tests.fakes.nginx import config_text

    shipped = (COMPOSE / "nginx.conf").read_text()
    rendered = config_text(tmp_path, 8080, ["127.0.0.1:8001", "127.0.0.1:8002"])
    changed = ("server ", "listen ", "worker_processes", "error_log", "access_log", "user ")
    kept = [line for line in shipped.splitlines() if not line.strip().startswith(changed)]
    assert [line for line in rendered.splitlines() if line in kept] == kept
    assert "proxy_next_upstream error timeout;" in rendered
    assert "add_header X-Replica $upstream_addr always;" in rendered


# --- systemd -----------------------------------------------------------------------------

UNITS = ("enclave.service", "enclave@.service", "vllm.service")


def systemd_verify(units: dict[str, str], tmp_path: Path) -> str:
    """``systemd-analyze verify`` on ``units`` (name -> text), with the programs they start
    replaced by a stand-in that exists here; its complaints about these units."""
    if shutil.which("systemd-analyze") is None:
        pytest.skip(
            "systemd-analyze is not installed (./task test installs it: apt-get install systemd)"
        )
    stand_in = tmp_path / "bin"
    stand_in.mkdir()
    for program in ("enclave", "vllm"):
        shutil.copy("/bin/true", stand_in / program)
    paths = []
    for name, text in units.items():
        path = tmp_path / name.replace("@.", "@8001.")  # a template is verified as an instance
        path.write_text(re.sub(r"/opt/(enclave|vllm)/bin/", f"{stand_in}/", text))
        paths.append(str(path))
    env = {**os.environ, "SYSTEMD_LOG_COLOR": "0"}
    result = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", *paths],
        capture_output=True, text=True, timeout=60, check=False, env=env,
    )  # fmt: skip
    ours = [line for line in (result.stdout + result.stderr).splitlines() if str(tmp_path) in line]
    return "\n".join(ours) if ours or result.returncode == 0 else result.stderr


def test_systemd_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    units = {name: (SYSTEMD / name).read_text() for name in UNITS}
    assert systemd_verify(units, tmp_path) == ""


def test_a_broken_unit_fails_systemd_analyze_verify(tmp_path: Path) -> None:
    text = (SYSTEMD / "enclave.service").read_text()
    broken = text.replace("ProtectSystem=strict", "ProtectSystem=strictly").replace(
        "NoNewPrivileges=yes", "NoNewPrivilege=yes"
    )
    complaints = systemd_verify({"enclave.service": broken}, tmp_path)
    assert "protect system value, ignoring: strictly" in complaints
    assert "NoNewPrivilege" in complaints


def unit_environment(name: str, instance: str) -> dict[str, str]:
    text = (SYSTEMD / name).read_text().replace("%i", instance)
    pairs = [
        line.removeprefix("Environment=").split("=", 1)
        for line in text.splitlines()
        if line.startswith("Environment=")
    ]
    return dict(pairs)


def test_systemd_replicas_load_their_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    env = unit_environment("enclave@.service", "8001")
    assert env.pop("ENCLAVE_CONFIG") == "/etc/enclave/enclave.yaml"
    settings = gateway_settings(env, COMPOSE / "enclave.yaml", monkeypatch)
    assert (settings.host, settings.port) == ("127.0.0.1", 8001)
    assert settings.home == Path("/var/lib/enclave")
    assert settings.audit.witness_file == Path("/var/lib/enclave/witness/8001.witness")
    assert settings.logs_dir == Path("/var/lib/enclave/logs/8001")
    assert unit_environment("enclave.service", "")["ENCLAVE_HOME"] == str(settings.home)


def test_systemd_units_are_hardened() -> None:
    for name in UNITS:
        text = (SYSTEMD / name).read_text()
        for directive in ("NoNewPrivileges=yes", "ProtectSystem=strict", "CapabilityBoundingSet="):
            assert f"\n{directive}\n" in text, (name, directive)


# --- docs/deploy.md ----------------------------------------------------------------------

DOC = DEPLOY.parent / "docs" / "deploy.md"


def setting_exists(dotted: str) -> bool:
    model: Any = Settings
    for part in dotted.split("."):
        field = getattr(model, "model_fields", {}).get(part)
        if field is None:
            return False
        model = field.annotation
        if getattr(model, "__args__", None):  # X | None: the section's class
            model = next(a for a in model.__args__ if a is not type(None))
    return True


def test_the_guide_names_real_settings_and_files() -> None:
    names = set(re.findall(r"`([a-z_]+(?:\.[a-z_]+)+)`", DOC.read_text()))
    sections = {name for name in Settings.model_fields if "." not in name}
    settings = {n for n in names if n.split(".")[0] in sections}
    assert settings, "the guide names no setting"
    assert [n for n in settings if not setting_exists(n)] == []
    files = {n for n in names if n.endswith((".yaml", ".service", ".conf"))}
    shipped = {p.name for p in DEPLOY.rglob("*") if p.is_file()}
    assert files - shipped == set()
