"""Every `enclave` subcommand and every `ask` mode, given bad or missing input, ends in
one readable line on stderr (or argparse's short usage text) and a non-zero exit: never
a Python traceback. Real subprocesses, no terminal, stdin from /dev/null unless a case
gives it; all cases run at once in threads (each bounded by a timeout) to stay fast."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.fakes.procs import free_port
from tests.gateway import ASK, ENCLAVE
from tests.helpers import clean_environ

TIMEOUT = 45  # seconds, per run: a hang is a failure too
CLOSED = f"http://127.0.0.1:{free_port()}"  # bound once, then released: nobody listens


@dataclass(frozen=True)
class Case:
    id: str
    argv: tuple[str, ...]
    stdin: str | None = None  # None: /dev/null
    env: dict[str, str] = field(default_factory=dict)


def enclave(id: str, *argv: str, stdin: str | None = None, **env: str) -> Case:
    return Case(id, (ENCLAVE, *argv), stdin, env)


def ask(id: str, *argv: str, stdin: str | None = None, **env: str) -> Case:
    return Case(id, (ASK, *argv), stdin, env)


# Files the cases point at are made in the home by ``home`` below: bad.yaml (not YAML),
# wrong.yaml (a wrong value), note.txt (not an image, not a GGUF, not JSON), bad.toml
# (not TOML), loose/ (a home whose secret key others may read).
ENCLAVE_CASES = [
    enclave("no-command"),
    enclave("unknown-flag", "--bogus"),
    enclave("unknown-command", "frobnicate"),
    enclave("config-missing-file", "--config", "/nonexistent/enclave.yaml", "config", "show"),
    enclave("config-not-yaml", "--config", "{home}/bad.yaml", "config", "show"),
    enclave("config-wrong-value", "--config", "{home}/wrong.yaml", "config", "show"),
    enclave("config-env-missing", "config", "show", ENCLAVE_CONFIG="/nonexistent/e.yaml"),
    enclave("config-no-action", "config"),
    enclave("serve-bad-port", "serve", "--port", "http"),
    enclave(
        "serve-missing-tls",
        "serve",
        "--port",
        "0",
        "--tls-cert",
        "/nonexistent/c.pem",
        "--tls-key",
        "/nonexistent/k.pem",
        "--no-engine",
    ),
    enclave("serve-missing-model", "serve", "--port", "0", "--model", "/nonexistent/m.gguf"),
    enclave("models-prepare-unknown", "models", "prepare", "no-such-model"),
    enclave("models-import-missing", "models", "import", "/nonexistent/m.gguf"),
    enclave("models-import-not-gguf", "models", "import", "{home}/note.txt"),
    enclave("bundle-unknown-model", "bundle", "--models", "no-such-model"),
    enclave("vllm-unknown-preset", "vllm-command", "--preset", "no-such-preset"),
    enclave("vllm-bad-tp", "vllm-command", "--tp", "many"),
    enclave("upstreams-closed-port", "upstreams", "--url", CLOSED),
    enclave("upstreams-bad-url", "upstreams", "--url", "not a url"),
    enclave("users-add-no-tty", "users", "add", "alice"),
    enclave("users-add-empty-stdin", "users", "add", "alice", "--password-stdin"),
    enclave("users-add-no-name", "users", "add"),
    enclave("users-add-bad-role", "users", "add", "bob", "--role", "king"),
    enclave("users-passwd-no-tty", "users", "passwd", "nobody"),
    enclave(
        "users-passwd-unknown",
        "users",
        "passwd",
        "nobody",
        "--password-stdin",
        stdin="a long enough password\n",
    ),
    enclave("users-disable-unknown", "users", "disable", "nobody"),
    enclave("keys-create-unknown-user", "keys", "create", "--user", "nobody"),
    enclave("keys-create-bad-expiry", "keys", "create", "--user", "nobody", "--expires", "soon"),
    enclave("keys-create-bad-rpm", "keys", "create", "--rpm", "lots"),
    enclave("keys-list-unknown-user", "keys", "list", "--user", "nobody"),
    enclave("keys-revoke-unknown", "keys", "revoke", "nosuchpr"),
    enclave("keys-rotate-unknown", "keys", "rotate", "nosuchpr"),
    enclave("audit-no-action", "audit"),
    enclave("audit-export-bad-since", "audit", "export", "--since", "yesterday-ish"),
    enclave("audit-export-bad-format", "audit", "export", "--format", "xml"),
    enclave("audit-export-bad-output", "audit", "export", "--output", "/nonexistent/a.jsonl"),
    enclave("audit-prune-bad-days", "audit", "prune", "--days", "-1"),
    enclave("audit-verify-loose-key", "audit", "verify", ENCLAVE_HOME="{home}/loose"),
    enclave("kb-create-bad-name", "kb", "create", "Bad Name!"),
    enclave("kb-create-bad-chunk", "kb", "create", "docs", "--chunk-size", "big"),
    enclave("kb-add-unknown", "kb", "add", "no-such-kb", "/nonexistent/doc.txt"),
    enclave("kb-search-unknown", "kb", "search", "no-such-kb", "what"),
    enclave("kb-list-unknown", "kb", "list", "no-such-kb"),
    enclave("kb-rm-unknown", "kb", "rm", "no-such-kb"),
    enclave("memory-list-no-user", "memory", "list"),
    enclave("memory-search-no-query", "memory", "search", "--user", "nobody"),
    enclave("memory-add-bad-kind", "memory", "add", "--user", "u", "tea", "--kind", "rumour"),
    enclave("memory-edit-bad-id", "memory", "edit", "--user", "nobody", "first", "text"),
    enclave("memory-rm-unknown", "memory", "rm", "--user", "nobody", "99999"),
    enclave("memory-erase-no-tty", "memory", "erase", "--user", "nobody"),
    enclave("memory-archive-ids-no-user", "memory", "archive", "--ids", "1"),
    enclave("memory-restore-bad-ids", "memory", "restore", "--user", "nobody", "--ids", "one"),
    enclave(
        "bench-closed-port",
        "bench",
        "--url",
        CLOSED,
        "--model",
        "m",
        "--requests",
        "1",
        "--no-sysmon",
        "--quiet",
        "--out",
        "{home}/bench-out",
    ),
    enclave("bench-bad-duration", "bench", "--url", CLOSED, "--duration", "soon"),
    enclave("bench-bad-extra-body", "bench", "--url", CLOSED, "--extra-body", "{not json"),
    enclave("bench-missing-dataset", "bench", "--url", CLOSED, "--dataset", "/nonexistent/d.jsonl"),
    enclave("bench-missing-image", "bench", "--url", CLOSED, "--image", "/nonexistent/i.png"),
    enclave("bench-compare-missing", "bench", "compare", "/nonexistent/a", "/nonexistent/b"),
    enclave("bench-compare-not-json", "bench", "compare", "{home}/note.txt", "{home}/note.txt"),
    enclave("verify-closed-port", "verify", "--url", CLOSED, "--model", "m"),
    enclave(
        "verify-missing-thresholds",
        "verify",
        "--url",
        CLOSED,
        "--thresholds",
        "/nonexistent/t.yaml",
    ),
    enclave("verify-bad-thresholds", "verify", "--url", CLOSED, "--thresholds", "{home}/bad.yaml"),
    enclave("verify-bad-soak", "verify", "--url", CLOSED, "--soak", "soon"),
]

ASK_CASES = [
    ask("no-question"),
    ask("unknown-flag", "--bogus"),
    ask("bad-max-tokens", "--max-tokens", "lots", "hi"),
    ask("closed-port", "hi"),
    ask("closed-port-stdin", stdin="what is this\n"),
    ask("closed-port-json", "--json", "--no-stream", "hi"),
    ask("bad-url", "--url", "not a url", "hi"),
    ask("missing-image", "-i", "/nonexistent/i.png", "hi"),
    ask("not-an-image", "-i", "{home}/note.txt", "hi"),
    ask("bad-image-side", "--max-image-side", "0", "-i", "{home}/note.txt", "hi"),
    ask("missing-file", "-f", "/nonexistent/f.txt", "hi"),
    ask("clip-no-display", "--clip", "hi"),
    ask("execute-no-tty", "-x", "list", "files"),
    ask("continue-nothing", "-c", "hi"),
    ask("session-closed-port", "--session", "work", "hi"),
    ask("unknown-role", "--role", "no-such-role", "hi"),
    ask("history-unknown", "history", "--show", "no-such-conversation"),
    ask("config-not-toml", "config", ASK_CONFIG="{home}/bad.toml"),
    ask("question-not-toml", "hi", ASK_CONFIG="{home}/bad.toml"),
]


@dataclass(frozen=True)
class Outcome:
    code: int | None  # None: it ran past TIMEOUT
    stdout: str
    stderr: str


def _environment(home: Path, extra: dict[str, str]) -> dict[str, str]:
    keep = {k: v for k, v in clean_environ().items() if not k.startswith("ASK_")}
    env = {
        **keep,
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_DATA_HOME": str(home / ".local/share"),
        "XDG_STATE_HOME": str(home / ".local/state"),
        "ENCLAVE_HOME": str(home / "enclave"),
        "ENCLAVE_URL": CLOSED,
        "ENCLAVE_MODEL": "fake-model",
        "ASK_CONFIG": "/nonexistent/ask.toml",
        "ASK_HISTORY": str(home / "ask-history.db"),
    }
    return {**env, **{k: v.replace("{home}", str(home)) for k, v in extra.items()}}


def _run(case: Case, home: Path) -> Outcome:
    argv = [part.replace("{home}", str(home)) for part in case.argv]
    try:
        done = subprocess.run(
            argv,
            input=case.stdin,
            stdin=subprocess.DEVNULL if case.stdin is None else None,
            capture_output=True,
            text=True,
            env=_environment(home, case.env),
            timeout=TIMEOUT,
            check=False,
            start_new_session=True,  # no controlling terminal to fall back on
        )
    except subprocess.TimeoutExpired as exc:
        return Outcome(None, str(exc.stdout or ""), str(exc.stderr or ""))
    return Outcome(done.returncode, done.stdout, done.stderr)


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("cli-errors")
    (home / "bad.yaml").write_text("server: [unclosed\n  : :\n")
    (home / "wrong.yaml").write_text("server:\n  port: not-a-port\n")
    (home / "note.txt").write_text("just some text\n")
    (home / "bad.toml").write_text("url = [unclosed\n")
    (home / "loose").mkdir()
    loose = home / "loose" / "secret.key"
    loose.write_text("00" * 32 + "\n")
    loose.chmod(0o644)
    return home


@pytest.fixture(scope="module")
def outcomes(home: Path) -> Iterator[dict[str, Outcome]]:
    """Every case, run once; the database is made first so that runs only read it."""
    ready = _run(enclave("migrate", "users", "list"), home)
    assert ready.code == 0, ready.stderr
    cases = [("enclave", c) for c in ENCLAVE_CASES] + [("ask", c) for c in ASK_CASES]
    with ThreadPoolExecutor(max_workers=8) as pool:
        runs = {f"{tool}:{c.id}": pool.submit(_run, c, home) for tool, c in cases}
        yield {key: run.result() for key, run in runs.items()}


def assert_readable_failure(outcome: Outcome) -> None:
    assert outcome.code is not None, f"still running after {TIMEOUT} s: {outcome.stderr!r}"
    assert outcome.code != 0, f"exit 0 on bad input: {outcome.stdout!r}"
    assert "Traceback" not in outcome.stdout + outcome.stderr, outcome.stderr
    lines = outcome.stderr.strip().splitlines()
    assert lines, "nothing on stderr"
    if outcome.code == 2 and lines[0].startswith("usage:"):  # argparse: usage, then why
        assert len(lines) <= 12, outcome.stderr
        assert ": error: " in lines[-1], outcome.stderr
    else:
        assert len(lines) == 1, outcome.stderr
        assert len(lines[0]) < 400, outcome.stderr


@pytest.mark.parametrize("case", ENCLAVE_CASES, ids=lambda c: c.id)
def test_enclave_bad_input(case: Case, outcomes: dict[str, Outcome]) -> None:
    assert_readable_failure(outcomes[f"enclave:{case.id}"])


@pytest.mark.parametrize("case", ASK_CASES, ids=lambda c: c.id)
def test_ask_bad_input(case: Case, outcomes: dict[str, Outcome]) -> None:
    assert_readable_failure(outcomes[f"ask:{case.id}"])
