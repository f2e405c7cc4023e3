"""``ask`` with ``ask.toml``, roles, piped stdin and ``-f`` files: the real executable
against the real fake upstream, checking what was actually sent."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from enclave.client.askconfig import BUILTIN_ROLES
from tests.fakes.procs import FakeUpstream, run_fake_upstream
from tests.helpers import assert_one_line_error, clean_environ, run_ask

ASK = Path(sys.executable).parent / "ask"
KEY = "sk-enc-abcdefgh-0123456789abcdefghijABCDEFGHIJkl"


@pytest.fixture
def config(tmp_path: Path, fake: FakeUpstream) -> Path:
    """A config file pointing at the fake; tests rewrite it as they need."""
    fake.reset()
    path = tmp_path / "ask.toml"
    path.write_text(f'url = "{fake.root}"\nmodel = "fake-model"\n')
    return path


def sent(fake: FakeUpstream) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = fake.stats()["last_request"]["messages"]
    return messages


def test_url_and_model_from_the_file(config: Path, fake: FakeUpstream) -> None:
    result = run_ask("hello", config=config)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("echo: hello ")
    assert fake.stats()["last_request"]["model"] == "fake-model"


def test_env_beats_file_and_flag_beats_env(config: Path, fake: FakeUpstream) -> None:
    config.write_text('url = "http://127.0.0.1:9"\nmodel = "nope"\n')
    by_env = run_ask("hi", config=config, ENCLAVE_URL=fake.root, ENCLAVE_MODEL="fake-model")
    assert by_env.returncode == 0, by_env.stderr
    by_flag = run_ask(
        "--url", fake.root, "--model", "fake-model", "hi",
        config=config, ENCLAVE_URL="http://127.0.0.1:9", ENCLAVE_MODEL="nope",
    )  # fmt: skip
    assert by_flag.returncode == 0, by_flag.stderr
    assert fake.stats()["last_request"]["model"] == "fake-model"


def test_xdg_config_home_is_used(tmp_path: Path, fake: FakeUpstream) -> None:
    fake.reset()
    (tmp_path / "enclave").mkdir()
    (tmp_path / "enclave" / "ask.toml").write_text(f'url = "{fake.root}"\nmodel = "fake-model"\n')
    env = {k: v for k, v in clean_environ().items() if k != "ASK_CONFIG"}
    result = subprocess.run(
        [str(ASK), "hi"], input="", capture_output=True, text=True, check=False, timeout=30,
        env={**env, "XDG_CONFIG_HOME": str(tmp_path)},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("echo: hi ")


def test_malformed_config_is_one_line_exit_2(config: Path) -> None:
    config.write_text("url = [\n")
    result = run_ask("hi", config=config)
    assert result.returncode == 2
    assert result.stderr.startswith(f"ask: config file {config}: ")
    assert result.stderr.count("\n") == 1
    assert "Traceback" not in result.stderr
    bad_key = run_ask("config", config=config.parent / "none.toml")
    assert bad_key.returncode == 0  # a missing file is fine: defaults apply


def test_api_key_command_success_and_failure(tmp_path: Path) -> None:
    path = tmp_path / "ask.toml"
    with run_fake_upstream(api_key=KEY) as guarded:
        path.write_text(
            f'url = "{guarded.root}"\nmodel = "fake-model"\napi_key_command = "echo {KEY}"\n'
        )
        ok = run_ask("hi", config=path)
        path.write_text(
            f'url = "{guarded.root}"\nmodel = "fake-model"\n'
            'api_key_command = "echo vault is locked >&2; exit 4"\n'
        )
        failed = run_ask("hi", config=path)
        overridden = run_ask("hi", config=path, ENCLAVE_API_KEY=KEY)
        completed = guarded.stats()["completed"]
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith("echo: hi ")
    assert_one_line_error(failed, "ask: api_key_command failed (exit 4): vault is locked", 2)
    assert overridden.returncode == 0, overridden.stderr  # the env key wins; no command run
    assert completed == 2


def test_api_key_command_not_run_for_config_or_usage_errors(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    path = tmp_path / "ask.toml"
    path.write_text(f'api_key_command = "touch {marker}; echo k"\n')
    shown = run_ask("config", config=path)
    assert shown.returncode == 0, shown.stderr
    assert f"api_key_command `touch {marker}; echo k`" in shown.stdout
    assert run_ask(config=path).returncode == 2  # no question
    assert not marker.exists()


def test_ask_config_masks_the_key_and_names_sources(config: Path, fake: FakeUpstream) -> None:
    config.write_text(f'url = "{fake.root}"\napi_key = "{KEY}"\nrole = "explain"\n')
    result = run_ask("config", "--model", "m1", config=config, ENCLAVE_URL="http://env:1")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f"config file      {config}"
    assert "url              http://env:1  [env ENCLAVE_URL]" in lines
    assert "api_key          sk-enc-abcdefgh…  [file]" in lines
    assert "model            m1  [flag]" in lines
    assert "role             explain  [file]" in lines
    assert "max_stdin_bytes  200000  [default]" in lines
    assert KEY not in result.stdout
    other = run_ask("config", config=config, ENCLAVE_API_KEY="plain-secret-value")
    assert "api_key          **********  [env ENCLAVE_API_KEY]" in other.stdout.splitlines()
    assert "plain-secret-value" not in other.stdout
    assert fake.stats()["completed"] == 0  # nothing was asked


def test_a_question_starting_with_config_is_a_question(config: Path, fake: FakeUpstream) -> None:
    result = run_ask("config", "files", "for", "nginx?", config=config)
    assert result.returncode == 0, result.stderr
    assert sent(fake) == [{"role": "user", "content": "config files for nginx?"}]


def test_builtin_role(config: Path, fake: FakeUpstream) -> None:
    result = run_ask("--role", "shell", "find files over 1 GB", config=config)
    assert result.returncode == 0, result.stderr
    assert sent(fake) == [
        {"role": "system", "content": BUILTIN_ROLES["shell"]},
        {"role": "user", "content": "find files over 1 GB"},
    ]


def test_custom_role_default_role_and_system_wins(config: Path, fake: FakeUpstream) -> None:
    config.write_text(
        config.read_text() + 'role = "sql"\n[roles.sql]\nprompt = "Answer in SQL only."\n'
        '[roles.review]\nprompt = "Be brief."\n'
    )
    assert run_ask("top users", config=config).returncode == 0
    assert sent(fake)[0] == {"role": "system", "content": "Answer in SQL only."}
    assert run_ask("--role", "review", "x", config=config).returncode == 0
    assert sent(fake)[0] == {"role": "system", "content": "Be brief."}
    assert run_ask("--role", "shell", "--system", "mine", "x", config=config).returncode == 0
    assert sent(fake)[0] == {"role": "system", "content": "mine"}


def test_unknown_role(config: Path, fake: FakeUpstream) -> None:
    result = run_ask("--role", "poet", "hi", config=config)
    assert_one_line_error(
        result, "ask: unknown role 'poet' (known roles: explain, review, shell)", 2
    )
    assert fake.stats()["completed"] == 0


def test_stdin_with_a_question_is_a_fenced_block(config: Path, fake: FakeUpstream) -> None:
    log = "step 1 ok\nstep 2: error: disk full\n"
    result = run_ask("为什么失败?", config=config, stdin=log)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert sent(fake) == [{"role": "user", "content": "为什么失败?\n\nstdin:\n```\n" + log + "```"}]


def test_fence_is_longer_than_backticks_inside(config: Path, fake: FakeUpstream) -> None:
    result = run_ask("explain", config=config, stdin="```\ncode\n```\n")
    assert result.returncode == 0, result.stderr
    assert sent(fake)[0]["content"] == "explain\n\nstdin:\n````\n```\ncode\n```\n````"


def test_stdin_over_the_cap_keeps_the_end(config: Path, fake: FakeUpstream) -> None:
    text = "é" * 30 + "THE ERROR"  # 69 bytes; cutting at 20 from the end splits an é
    result = run_ask("--max-stdin-bytes", "20", "why", config=config, stdin=text)
    assert result.returncode == 0, result.stderr
    assert result.stderr == "ask: stdin: kept the last 19 of 69 bytes\n"
    content = sent(fake)[0]["content"]
    assert content == (
        "why\n\nstdin:\n```\n[stdin: kept the last 19 of 69 bytes]\n" + "é" * 5 + "THE ERROR\n```"
    )


def test_cap_from_the_config_file(config: Path, fake: FakeUpstream) -> None:
    config.write_text(config.read_text() + "max_stdin_bytes = 5\n")
    result = run_ask("why", config=config, stdin="0123456789")
    assert result.returncode == 0, result.stderr
    assert "[stdin: kept the last 5 of 10 bytes]\n56789\n" in sent(fake)[0]["content"]


def test_stdin_alone_is_still_the_question(config: Path, fake: FakeUpstream) -> None:
    result = run_ask(config=config, stdin="what is a goroutine\n")
    assert result.returncode == 0, result.stderr
    assert sent(fake) == [{"role": "user", "content": "what is a goroutine"}]


def test_files_are_fenced_with_their_names(
    config: Path, fake: FakeUpstream, tmp_path: Path
) -> None:
    code, notes = tmp_path / "app.py", tmp_path / "notes.txt"
    code.write_text("print('hi')\n")
    notes.write_text("0123456789ABCDEFGHIJ")
    result = run_ask(
        "-f", str(code), "--file", str(notes), "--max-stdin-bytes", "12", "review this",
        config=config,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stderr == f"ask: {notes}: kept the last 12 of 20 bytes\n"
    assert sent(fake)[0]["content"] == (
        f"review this\n\nfile {code}:\n```py\nprint('hi')\n```\n\n"
        f"file {notes}:\n```txt\n[{notes}: kept the last 12 of 20 bytes]\n89ABCDEFGHIJ\n```"
    )


def test_binary_and_missing_files(config: Path, fake: FakeUpstream, tmp_path: Path) -> None:
    blob = tmp_path / "blob.bin"
    blob.write_bytes(b"\x7fELF\x00\x01\x02")
    binary = run_ask("-f", str(blob), "what", config=config)
    assert_one_line_error(binary, f"ask: {blob} is binary, not text (attach images with -i)", 2)
    missing = run_ask("-f", str(tmp_path / "nope.txt"), "what", config=config)
    assert_one_line_error(
        missing, f"ask: cannot read {tmp_path / 'nope.txt'}: No such file or directory", 2
    )
    piped = run_ask("what", config=config, stdin=b"\x00\x01binary")
    assert_one_line_error(piped, "ask: stdin is binary, not text (attach images with -i)", 2)
    assert fake.stats()["completed"] == 0
