"""Settings: defaults < YAML file < ENCLAVE_* environment < command-line flags."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from enclave.config import apply_overrides, load_settings, masked
from enclave.errors import ConfigError
from tests.gateway import ENCLAVE

pytestmark = pytest.mark.usefixtures("clean_env")


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "enclave.yaml"
    path.write_text(text)
    return path


def test_defaults(tmp_path: Path) -> None:
    settings = load_settings()
    assert settings.host == "127.0.0.1"
    assert settings.port == 8000
    assert settings.home == tmp_path / "xdg" / "enclave"
    assert settings.models_dir == settings.home / "models"
    assert settings.engine.public_names() == ["qwen2.5-coder-1.5b-instruct"]
    assert settings.limits.max_images == 8
    assert settings.limits.max_image_bytes == 20 * 2**20


def test_yaml_then_environment_then_flags(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, "port: 9000\nengine:\n  threads: 3\n  ctx_size: 4096\n")
    assert load_settings(path).port == 9000
    monkeypatch.setenv("ENCLAVE_PORT", "9100")
    monkeypatch.setenv("ENCLAVE_ENGINE__THREADS", "5")
    settings = load_settings(path)
    assert settings.port == 9100
    assert settings.engine.threads == 5
    assert settings.engine.ctx_size == 4096  # the file's value survives a nested env override
    flagged = apply_overrides(settings, port=9200, **{"engine.threads": None})
    assert flagged.port == 9200
    assert flagged.engine.threads == 5


def test_config_file_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENCLAVE_CONFIG", str(write(tmp_path, "log_level: debug\n")))
    assert load_settings().log_level == "debug"


def test_human_sizes(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, "limits:\n  max_body_bytes: 10MiB\n"))
    assert settings.limits.max_body_bytes == 10 * 2**20


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("port: [1\n", "not valid YAML"),
        ("- a list\n", "mapping"),
        ("port: lots\n", "invalid setting port"),
        ("engine:\n  thread: 4\n", "invalid setting engine.thread"),
    ],
)
def test_bad_files_are_named(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings(write(tmp_path, text))


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_settings(tmp_path / "nope.yaml")


def test_secrets_are_masked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GPU1_KEY", "sk-from-env")
    text = (
        "upstreams:\n"
        "  - {name: a, base_url: 'http://10.0.0.1:8000/v1', api_key: sk-secret-1}\n"
        "  - {name: b, base_url: 'http://10.0.0.2:8000/v1', api_key_env: GPU1_KEY}\n"
    )
    settings = load_settings(write(tmp_path, text))
    key = settings.upstreams[1].api_key
    assert key is not None
    assert key.get_secret_value() == "sk-from-env"
    shown = json.dumps(masked(settings))
    assert "sk-secret-1" not in shown
    assert "sk-from-env" not in shown
    assert "**********" in shown


def test_config_show_command(tmp_path: Path) -> None:
    path = write(tmp_path, "upstreams:\n  - {name: a, base_url: 'http://x/v1', api_key: sk-9}\n")
    done = subprocess.run(
        [ENCLAVE, "--config", str(path), "config", "show", "--json"],
        env={"ENCLAVE_HOME": str(tmp_path / "h"), "PATH": "/usr/bin:/bin"},
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    shown = json.loads(done.stdout)
    assert shown["home"] == str(tmp_path / "h")
    assert shown["upstreams"][0]["api_key"] == "**********"
    assert "sk-9" not in done.stdout


def test_config_errors_are_one_line(tmp_path: Path) -> None:
    done = subprocess.run(
        [ENCLAVE, "--config", str(write(tmp_path, "port: lots\n")), "config", "show"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1
    assert "invalid setting port" in done.stderr
    assert "Traceback" not in done.stderr


def test_passwords_in_database_and_redis_urls_are_masked() -> None:
    from enclave.config import Settings, masked

    settings = Settings(
        database_url="postgresql+asyncpg://enclave:s3cret@db:5432/enclave",
        auth={"redis_url": "redis://:hunter22@cache:6379/0"},
    )
    shown = masked(settings)
    assert shown["database_url"] == "postgresql+asyncpg://enclave:**********@db:5432/enclave"
    assert shown["auth"]["redis_url"] == "redis://:**********@cache:6379/0"
    assert "s3cret" not in str(shown)
    assert "hunter22" not in str(shown)
