"""The engine's child process: llama.cpp's own HTTP server (xllamacpp) on a loopback port.

Run by the supervisor as ``python -m enclave.engine.child --model PATH --port N ...``.
It dies with its parent (PR_SET_PDEATHSIG, and a watch on the parent pid as a second
guard), and stops cleanly on SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import os
import signal
import sys
import threading
from collections.abc import Sequence
from typing import Any

from enclave.engine import speculative

PR_SET_PDEATHSIG = 1


def die_with_parent(parent: int) -> None:
    """This process stops when ``parent`` is gone (PR_SET_PDEATHSIG, and a watch on the
    pid: where prctl is missing the watcher thread still covers it)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)

    def watch() -> None:
        while os.getppid() == parent:
            threading.Event().wait(1.0)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, daemon=True, name="parent-watch").start()


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="enclave-engine")
    parser.add_argument("--model", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--ctx-size", type=int, default=8192)
    parser.add_argument("--parallel", type=int, default=2)
    parser.add_argument("--alias", action="append", default=[])
    parser.add_argument("--parent", type=int, default=os.getppid())
    speculative.add_arguments(parser)
    return parser.parse_args(argv)


def build_params(args: argparse.Namespace) -> Any:
    import xllamacpp

    params = xllamacpp.CommonParams()
    params.model.path = args.model
    params.hostnames = ["127.0.0.1"]
    params.port = args.port
    params.n_ctx = args.ctx_size
    params.n_parallel = args.parallel
    params.cpuparams.n_threads = args.threads
    params.cpuparams_batch.n_threads = args.threads
    params.cache_prompt = True  # a multi-turn chat does not re-process its prefix
    params.model_alias = set(args.alias)
    params.ui = False
    params.offline = True  # never reach for a model hub
    params.endpoint_metrics = True
    # The chat template from the GGUF, run as Jinja: a request's ``tools`` reach the prompt
    # and a template-format call (Qwen's <tool_call>, ...) comes back as ``tool_calls``.
    # A template without tools ignores them; the gateway reads a call written as a JSON
    # block instead (enclave.gateway.chat.toolcalls).
    params.use_jinja = True
    params.enable_chat_template = True
    speculative.apply(params, args)
    return params


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    die_with_parent(args.parent)
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
    import xllamacpp

    server = xllamacpp.Server(build_params(args))
    print(f"enclave-engine: listening on {server.listening_address}", flush=True)
    signal.sigwait({signal.SIGTERM, signal.SIGINT})
    print("enclave-engine: stopping", flush=True)
    del server
    return 0


if __name__ == "__main__":
    sys.exit(main())
