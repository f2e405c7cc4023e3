"""A real terminal for tests: one program in a private tmux server, driven with
send-keys and read with capture-pane."""

from __future__ import annotations

import re
import shlex
import subprocess
import time
import uuid
from pathlib import Path


class Terminal:
    """One program in a detached tmux session of its own (a private tmux server)."""

    def __init__(self, argv: list[str], env: dict[str, str], cwd: Path) -> None:
        self.socket = f"ask-test-{uuid.uuid4().hex[:8]}"
        exports = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
        program = f"cd {shlex.quote(str(cwd))} && env -i {exports} {shlex.join(argv)}"
        script = f'{program}; echo "[exit $?]"; sleep 600'
        self.tmux("new-session", "-d", "-s", "t", "-x", "100", "-y", "40", script)

    def tmux(self, *args: str) -> str:
        done = subprocess.run(
            ["tmux", "-L", self.socket, "-f", "/dev/null", *args],
            capture_output=True, text=True, check=True, timeout=10,
        )  # fmt: skip
        return done.stdout

    def keys(self, *keys: str, literal: bool = False) -> None:
        self.tmux("send-keys", "-t", "t", *(["-l"] if literal else []), *keys)

    def type(self, text: str) -> None:
        self.keys(text, literal=True)

    def screen(self, *, styles: bool = False) -> str:
        """The pane and its scrollback; trailing spaces and empty lines dropped (so a
        prompt waiting for input ends the text as ``User >``)."""
        text = self.tmux("capture-pane", "-p", "-t", "t", "-S", "-200", *(["-e"] if styles else []))
        return "\n".join(line.rstrip() for line in text.splitlines()).rstrip()

    def wait_for(self, pattern: str, timeout: float = 15.0) -> str:
        """Wait until ``pattern`` (a regex) matches the screen; return the screen."""
        deadline = time.monotonic() + timeout
        while True:
            text = self.screen()
            if re.search(pattern, text):
                return text
            if time.monotonic() > deadline:
                raise AssertionError(f"{pattern!r} did not show; the screen:\n{text}")
            time.sleep(0.05)

    def close(self) -> None:
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True, check=False)
