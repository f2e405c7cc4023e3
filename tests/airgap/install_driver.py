"""Inside the namespace: install.sh from the bundle (which then starts ``enclave serve``),
wait for ``/health``, ask the tiny model one question over HTTP and one with the installed
``ask``, stop the server.

Run as ``python -I install_driver.py BUNDLE PREFIX BIN PORT MODEL`` with nothing but
the standard library, so that nothing of the test's own environment helps the install.
It prints ``{"chat": <the answer>, "ask": <ask's output>}`` on its last line and exits
non-zero on any failure.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

HEALTH_WAIT_S = 600.0  # install (every wheel) and the engine's first start, on a busy host


def main(bundle: str, prefix: str, bin_dir: str, port: str, model: str) -> int:
    script = os.path.join(bundle, "install.sh")
    server = subprocess.Popen([script, "--prefix", prefix, "--bin", bin_dir])
    url = f"http://127.0.0.1:{port}"
    try:
        if not _healthy(url + "/health", server):
            return 1
        asked = subprocess.run(
            [os.path.join(bin_dir, "ask"), "--model", model, "--max-tokens", "8", "Say", "hi"],
            env={**os.environ, "ENCLAVE_URL": url},
            capture_output=True, text=True, timeout=300, check=False,
        )  # fmt: skip
        if asked.returncode != 0:
            print(f"ask failed: {asked.stderr}", file=sys.stderr)
            return 1
        print(json.dumps({"chat": _chat(url, model), "ask": asked.stdout}), flush=True)
        return 0
    finally:
        if server.poll() is None:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()


def _healthy(url: str, server: subprocess.Popen[bytes]) -> bool:
    deadline = time.monotonic() + HEALTH_WAIT_S
    while time.monotonic() < deadline:
        if server.poll() is not None:
            print(f"install.sh exited with {server.returncode}", file=sys.stderr)
            return False
        try:
            with urllib.request.urlopen(url, timeout=2) as reply:
                if reply.status == 200:
                    return True
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.5)
    print(f"{url} did not answer 200 within {HEALTH_WAIT_S} s", file=sys.stderr)
    return False


def _chat(url: str, model: str) -> dict[str, object]:
    body = {
        "model": model,
        "messages": [{"role": "user", "content": "Name three colors."}],
        "max_tokens": 8,
        "temperature": 0,
    }
    request = urllib.request.Request(
        url + "/v1/chat/completions",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "Authorization": "Bearer unused"},
    )
    with urllib.request.urlopen(request, timeout=300) as reply:
        answer: dict[str, object] = json.loads(reply.read())
        return answer


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:6]))
