"""LiteLLM's proxy for comparison: its own virtualenv, an offline environment, a config.

LiteLLM is a yardstick, not a dependency: it lives in ``.venv-litellm/`` at the repository
root (git-ignored), created on first use with ``pip install 'litellm[proxy]==VERSION'`` from
the package registry. Nothing else is fetched, then or later:

- ``LITELLM_LOCAL_MODEL_COST_MAP=True`` and its siblings make LiteLLM read its bundled
  cost map, beta-header list, presets, policy templates and blog posts instead of fetching
  them from the internet at start-up (without them it tries to, and waits on retries);
- ``HF_HUB_OFFLINE`` / ``TRANSFORMERS_OFFLINE`` keep tokenizer look-ups local; there is no
  database, no callback, no admin UI and no feedback banner; logging is ``ERROR`` only,
  which also silences uvicorn's access log (enclave runs with ``access_log: false`` too);
- the process gets a minimal environment (``PATH``, a scratch ``HOME``, the variables
  above), not the caller's: no credentials of this machine are visible to it.

Version pin: 1.106.2 is the newest release whose dependencies resolve from the registry
this project uses (1.106.3 and later require ``certifi>=2026.10.19``, not published there),
and it predates the 1.107.0 release reported as compromised. After installing, the
virtualenv is checked for ``.pth`` start-up hooks other than setuptools' own (the
1.82.7/1.82.8 compromise used one).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
VENV = REPO_ROOT / ".venv-litellm"
VERSION = "1.106.2"
STAMP = ".bench-litellm"
KNOWN_PTH = {"distutils-precedence.pth"}  # setuptools' own

OFFLINE_ENV = {
    "LITELLM_LOCAL_MODEL_COST_MAP": "True",
    "LITELLM_LOCAL_ANTHROPIC_BETA_HEADERS": "True",
    "LITELLM_LOCAL_AUTOROUTER_PRESETS": "True",
    "LITELLM_LOCAL_POLICY_TEMPLATES": "True",
    "LITELLM_LOCAL_BLOG_POSTS": "True",
    "LITELLM_DONT_SHOW_FEEDBACK_BOX": "true",
    "LITELLM_LOG": "ERROR",
    "DISABLE_ADMIN_UI": "True",
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "NO_PROXY": "127.0.0.1,localhost",
    # No master key, like enclave's gateway here (no auth on either side). LiteLLM
    # refuses to start without one unless told this is on purpose.
    "LITELLM_DANGEROUSLY_PERMIT_WEAK_OR_UNSET_MASTER_KEY": "true",
}


def executable(venv: Path = VENV) -> Path:
    return venv / "bin" / "litellm"


def ensure(venv: Path = VENV, version: str = VERSION) -> Path:
    """The ``litellm`` executable of ``venv``, installing ``litellm[proxy]==version`` first."""
    stamp = venv / STAMP
    exe = executable(venv)
    if exe.exists() and stamp.exists() and stamp.read_text().strip() == version:
        return exe
    python = venv / "bin" / "python"
    if not python.exists():
        print(f"creating {venv} for LiteLLM (once)", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    requirement = f"litellm[proxy]=={version}"
    print(f"installing {requirement} into {venv} (once, about a minute)", flush=True)
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", requirement],
        check=True,
    )
    check_startup_hooks(venv)
    stamp.write_text(version + "\n")
    return exe


def check_startup_hooks(venv: Path) -> None:
    """Refuse a virtualenv with unknown ``.pth`` files (code run at every interpreter start)."""
    found = sorted(p.name for p in venv.glob("lib/python*/site-packages/*.pth"))
    unknown = [name for name in found if name not in KNOWN_PTH]
    if unknown:
        raise RuntimeError(
            f"{venv} has unexpected start-up hooks {unknown}; not running it. "
            f"Remove {venv} and check the LiteLLM release before trying again."
        )


def write_config(path: Path, api_base: str, model: str) -> None:
    """One model, ``model`` → ``openai/model`` at ``api_base`` with a dummy key."""
    config = {
        "model_list": [
            {
                "model_name": model,
                "litellm_params": {
                    "model": f"openai/{model}",
                    "api_base": api_base,
                    "api_key": "sk-bench-dummy",
                },
            }
        ],
        "litellm_settings": {"suppress_debug_info": True, "set_verbose": False},
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))


def environment(home: Path) -> dict[str, str]:
    """The whole environment of the LiteLLM process (not added to the caller's)."""
    return {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(home), **OFFLINE_ENV}


def command(exe: Path, config: Path, host: str, port: int) -> list[str]:
    server = ["--host", host, "--port", str(port), "--num_workers", "1"]
    return [str(exe), "--config", str(config), *server]


def installed_version(venv: Path = VENV) -> str:
    python = venv / "bin" / "python"
    code = "import importlib.metadata as m; print(m.version('litellm'))"
    out = subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=True)
    return out.stdout.strip()
