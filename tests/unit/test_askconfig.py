"""``ask``'s settings: loading ``ask.toml`` and merging flags > env > file > defaults."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from enclave.client import askconfig
from enclave.client.askconfig import (
    BUILTIN_ROLES,
    config_path,
    describe,
    load,
    load_file,
    mask_key,
    merge,
    resolve_api_key,
)
from enclave.errors import AskConfigError

NO_FLAGS: dict[str, object] = {}
KEY = "sk-enc-abcdefgh-0123456789abcdefghijABCDEFGHIJkl"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "ask.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_path_ask_config_then_xdg_then_home(tmp_path: Path) -> None:
    assert config_path({"ASK_CONFIG": "/x/a.toml", "XDG_CONFIG_HOME": "/y"}) == Path("/x/a.toml")
    assert config_path({"XDG_CONFIG_HOME": "/y"}) == Path("/y/enclave/ask.toml")
    assert config_path({}) == Path("~/.config/enclave/ask.toml").expanduser()


def test_defaults_without_a_file(tmp_path: Path) -> None:
    config = load(NO_FLAGS, {"ASK_CONFIG": str(tmp_path / "missing.toml")})
    assert not config.found
    assert config.value("url") == "http://127.0.0.1:8000"
    assert config.value("model") == "default"
    assert config.value("api_key") is None
    assert config.value("max_stdin_bytes") == 200_000
    assert {s.source for s in config.settings.values()} == {"default"}
    assert set(config.roles) == set(BUILTIN_ROLES) == {"shell", "explain", "review"}


def test_precedence_flag_env_file_default(tmp_path: Path) -> None:
    path = write(tmp_path, 'url = "http://file"\nmodel = "file-model"\ntheme = "dracula"\n')
    env = {"ASK_CONFIG": str(path), "ENCLAVE_URL": "http://env", "ENCLAVE_MODEL": "env-model"}
    config = load({"url": "http://flag", "model": None}, env)
    assert (config.value("url"), config.settings["url"].source) == ("http://flag", "flag")
    assert config.value("model") == "env-model"
    assert config.settings["model"].source == "env ENCLAVE_MODEL"
    assert (config.value("theme"), config.settings["theme"].source) == ("dracula", "file")
    assert config.settings["role"].source == "default"


def test_empty_env_value_does_not_count(tmp_path: Path) -> None:
    config = merge(NO_FLAGS, {"ENCLAVE_MODEL": ""}, {"model": "m"}, path=tmp_path / "a")
    assert config.settings["model"] == askconfig.Setting("m", "file")


def test_api_key_command_only_when_no_flag_or_env(tmp_path: Path) -> None:
    file = {"api_key_command": "echo k"}
    assert merge(NO_FLAGS, {}, file, path=tmp_path).api_key_command == "echo k"
    by_env = merge(NO_FLAGS, {"ENCLAVE_API_KEY": "e"}, file, path=tmp_path)
    assert by_env.api_key_command is None
    assert resolve_api_key(by_env) == "e"
    by_flag = merge({"api_key": "f"}, {"ENCLAVE_API_KEY": "e"}, file, path=tmp_path)
    assert resolve_api_key(by_flag) == "f"


def test_api_key_command_runs_and_strips(tmp_path: Path) -> None:
    config = merge(NO_FLAGS, {}, {"api_key_command": f"echo '{KEY}'"}, path=tmp_path)
    assert resolve_api_key(config) == KEY


def test_api_key_command_failures(tmp_path: Path) -> None:
    def key(command: str, timeout: float = 10.0) -> str | None:
        config = merge(NO_FLAGS, {}, {"api_key_command": command}, path=tmp_path)
        return resolve_api_key(config, timeout=timeout)

    with pytest.raises(AskConfigError, match=r"^api_key_command failed \(exit 3\): no vault$"):
        key("echo no vault >&2; exit 3")
    with pytest.raises(AskConfigError, match="printed nothing"):
        key("true")
    with pytest.raises(AskConfigError, match=r"timed out after 0\.2 s"):
        key(f"{sys.executable} -c 'import time; time.sleep(5)'", timeout=0.2)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("url = [", "Invalid value"),
        ("colour = 'red'", "unknown key 'colour'"),
        ("url = 3", "url must be a string"),
        ("max_stdin_bytes = 0", "max_stdin_bytes must be a positive integer"),
        ("max_stdin_bytes = true", "max_stdin_bytes must be a positive integer"),
        ("api_key = 'a'\napi_key_command = 'b'", "not both"),
        ("roles = 'x'", "roles must be a table"),
        ("[roles.sql]\ntext = 'x'", '[roles.sql] needs prompt = "..."'),
        ("[roles.sql]\nprompt = 'x'\ncolour = 1", "[roles.sql] has unknown key 'colour'"),
    ],
)
def test_malformed_file(tmp_path: Path, text: str, problem: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(AskConfigError) as caught:
        load_file(path)
    message = str(caught.value)
    assert message.startswith(f"config file {path}: ")
    assert problem in message
    assert "\n" not in message


def test_not_utf8_file(tmp_path: Path) -> None:
    path = tmp_path / "ask.toml"
    path.write_bytes(b"url = '\xff'")
    with pytest.raises(AskConfigError, match="cannot read it"):
        load_file(path)


def test_roles_from_file_add_and_override(tmp_path: Path) -> None:
    text = '[roles.sql]\nprompt = "SQL only"\n[roles.shell]\nprompt = "fish commands"\n'
    config = load(NO_FLAGS, {"ASK_CONFIG": str(write(tmp_path, text))})
    assert config.role_prompt("sql") == "SQL only"
    assert config.role_prompt("shell") == "fish commands"
    assert config.role_prompt("review") == BUILTIN_ROLES["review"]
    with pytest.raises(AskConfigError) as caught:
        config.role_prompt("poet")
    assert str(caught.value) == "unknown role 'poet' (known roles: explain, review, shell, sql)"


def test_mask_key() -> None:
    assert mask_key(KEY) == "sk-enc-abcdefgh…"
    assert mask_key("hunter2-but-long-enough-to-matter") == "**********"
    assert mask_key("sk-enc-short") == "**********"
    assert mask_key(None) == "(none)"


def test_describe_masks_and_names_sources(tmp_path: Path) -> None:
    path = write(tmp_path, f'api_key = "{KEY}"\n[roles.sql]\nprompt = "x"\n')
    lines = describe(load({"model": "m"}, {"ASK_CONFIG": str(path)}))
    text = "\n".join(lines)
    assert KEY not in text
    assert "api_key          sk-enc-abcdefgh…  [file]" in lines
    assert "model            m  [flag]" in lines
    assert lines[-1] == "roles            explain, review, shell; from file: sql"


def test_describe_does_not_run_the_key_command(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    path = write(tmp_path, f'api_key_command = "touch {marker}"\n')
    text = "\n".join(describe(load(NO_FLAGS, {"ASK_CONFIG": str(path)})))
    assert f"api_key_command `touch {marker}`" in text
    assert not marker.exists()
