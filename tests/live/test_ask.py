"""The real ``ask`` executable, run as a subprocess against the real fake upstream."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.fakes.procs import FakeUpstream, free_port, run_fake_upstream
from tests.helpers import assert_one_line_error, run_ask

pytestmark = pytest.mark.fake_upstream(vision=True)
ASK = Path(sys.executable).parent / "ask"
PNG = Path(__file__).resolve().parents[1] / "data" / "ocr_chinese.png"


def test_streamed_answer(url: str, fake: FakeUpstream) -> None:
    result = run_ask("what", "is", "up", url=url)
    assert result.returncode == 0, result.stderr
    assert (
        result.stdout
        == "echo: what is up images=0 texts=1 " + " ".join(f"t{i}" for i in range(7, 17)) + "\n"
    )
    stats = fake.stats()
    assert stats["last_request"]["stream"] is True
    assert stats["last_request"]["messages"] == [{"role": "user", "content": "what is up"}]
    assert stats["completed"] == 1


def test_url_with_v1_and_trailing_slash(fake: FakeUpstream) -> None:
    result = run_ask("hi", url=fake.base_url + "/")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("echo: hi ")


def test_no_stream_and_options(url: str, fake: FakeUpstream) -> None:
    result = run_ask(
        "--no-stream", "--max-tokens", "3", "--temperature", "0.5", "a", "b", "c", url=url
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "echo: a b\n"
    sent = fake.stats()["last_request"]
    assert (sent["stream"], sent["max_tokens"], sent["temperature"]) == (False, 3, 0.5)


def test_image_is_sent_as_data_url(url: str, fake: FakeUpstream) -> None:
    result = run_ask("-i", str(PNG), "what", "is", "this", url=url)
    assert result.returncode == 0, result.stderr
    assert "images=1 texts=1" in result.stdout
    text, image = fake.stats()["last_request"]["messages"][0]["content"]
    assert text == {"type": "text", "text": "what is this"}
    assert image["type"] == "image_url"
    assert image["image_url"]["url"].startswith("data:image/png;base64,iVBORw0KGgo")


def test_system_prompt(url: str, fake: FakeUpstream) -> None:
    result = run_ask("--system", "answer in French", "hello", url=url)
    assert result.returncode == 0, result.stderr
    assert fake.stats()["last_request"]["messages"] == [
        {"role": "system", "content": "answer in French"},
        {"role": "user", "content": "hello"},
    ]


def test_question_from_stdin(url: str, fake: FakeUpstream) -> None:
    result = run_ask(url=url, stdin="why is the sky blue\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("echo: why is the sky blue ")
    assert fake.stats()["last_request"]["messages"][-1]["content"] == "why is the sky blue"


def test_no_question_is_a_usage_error(url: str) -> None:
    result = run_ask(url=url, stdin="")
    assert result.returncode == 2
    assert result.stderr.startswith("usage: ask")
    assert "no question" in result.stderr
    assert "Traceback" not in result.stderr


def test_server_down(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    result = run_ask("hello", url=url)
    message = f"ask: cannot reach enclave at {url} — is `enclave serve` running?"
    assert_one_line_error(result, message, 2)
    assert result.stdout == ""


def test_api_key_refused() -> None:
    with run_fake_upstream(api_key="secret") as guarded:
        refused = run_ask("hi", url=guarded.root, ENCLAVE_API_KEY="wrong")
        missing = run_ask("hi", url=guarded.root)
        accepted = run_ask("--api-key", "secret", "hi", url=guarded.root, ENCLAVE_API_KEY="no")
    assert_one_line_error(refused, "ask: the API key was refused", 1)
    assert_one_line_error(missing, "ask: the API key was refused", 1)
    assert accepted.returncode == 0, accepted.stderr
    assert accepted.stdout.startswith("echo: hi ")


def test_unknown_model(url: str) -> None:
    result = run_ask("--model", "nope", "hi", url=url)
    assert_one_line_error(result, "ask: 404: The model `nope` does not exist.", 1)


def test_server_error_status(fake: FakeUpstream) -> None:
    with run_fake_upstream(fail_status=500) as failing:
        result = run_ask("hi", url=failing.root)
    assert_one_line_error(result, "ask: 500: scripted failure", 1)


def test_error_event_mid_stream() -> None:
    with run_fake_upstream(error_after=3) as breaking:
        result = run_ask("one", "two", "three", url=breaking.root)
    assert_one_line_error(result, "ask: scripted mid-stream failure", 1, stdout="echo: one two\n")
    assert result.stdout == "echo: one two\n"


def test_missing_image(url: str, tmp_path: Path) -> None:
    path = tmp_path / "nope.png"
    result = run_ask("-i", str(path), "hi", url=url)
    assert_one_line_error(result, f"ask: cannot read image {path}: No such file or directory", 2)


def test_not_an_image(url: str, tmp_path: Path) -> None:
    path = tmp_path / "notes.png"
    path.write_text("plain text")
    result = run_ask("-i", str(path), "hi", url=url)
    assert_one_line_error(result, f"ask: {path} is not a PNG, JPEG, WebP, GIF or BMP image", 2)


def test_version() -> None:
    from enclave import __version__

    result = subprocess.run([str(ASK), "--version"], capture_output=True, text=True, check=True)
    assert result.stdout == f"ask {__version__}\n"


BAD_INPUT = {
    "missing file": ["-f", "{tmp}/nope.txt", "hi"],
    "directory as file": ["-f", "{tmp}", "hi"],
    "binary file": ["-f", "{tmp}/binary.dat", "hi"],
    "text as image": ["-i", "{tmp}/notes.png", "hi"],
    "clipboard without display": ["--clip", "hi"],
    "unknown role": ["--role", "nope", "hi"],
    "bad config file": ["hi"],
    "unknown session": ["history", "--show", "nope"],
    "unreachable server": ["hi"],
    "-x unreachable": ["-x", "hi"],
    "-c with --session": ["-c", "--session", "s", "hi"],
    "unknown flag": ["--bogus", "hi"],
    "bad int": ["--max-tokens", "many", "hi"],
    "no question": [],
}


@pytest.mark.parametrize("case", list(BAD_INPUT))
def test_bad_input_ends_in_one_readable_line(case: str, tmp_path: Path) -> None:
    """Every bad or missing input: a non-zero exit and ``ask: ...`` as the last line of
    stderr, after argparse's usage for a usage error, else alone; never a traceback."""
    (tmp_path / "binary.dat").write_bytes(b"a\x00b")
    (tmp_path / "notes.png").write_text("plain text")
    config = tmp_path / "ask.toml"
    config.write_text("url = 3\n" if case == "bad config file" else "")
    args = [arg.replace("{tmp}", str(tmp_path)) for arg in BAD_INPUT[case]]
    url = f"http://127.0.0.1:{free_port()}"
    data = str(tmp_path / "data")
    result = run_ask(
        *args, url=url, config=config, DISPLAY="", WAYLAND_DISPLAY="", XDG_DATA_HOME=data
    )
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    lines = result.stderr.splitlines()
    assert lines[-1].startswith("ask: "), result.stderr
    if len(lines) > 1:
        assert lines[0].startswith("usage: ask "), result.stderr
        assert lines[-1].startswith("ask: error: "), result.stderr
