"""``enclave serve``."""

from __future__ import annotations

import argparse
from typing import Any

from enclave.config import ConfigSource, Settings, apply_overrides


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser("serve", help="run the gateway (and the embedded engine)")
    parser.add_argument("--host", help="bind address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port (default 8000)")
    parser.add_argument("--model", help="engine model: a prepared name or a .gguf path")
    parser.add_argument(
        "--served-model-name", action="append", help="public name of the engine model (repeat)"
    )
    parser.add_argument("--threads", type=int, help="engine threads (default: one per core)")
    parser.add_argument("--ctx-size", type=int, help="engine context, shared by its slots")
    parser.add_argument("--parallel", type=int, help="engine slots (concurrent requests)")
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="gateway processes on the port (SO_REUSEPORT; default 1; docs/replicas.md)",
    )
    parser.add_argument("--no-engine", action="store_true", help="serve remote upstreams only")
    parser.add_argument("--log-level", help="debug, info, warning, error")
    parser.add_argument("--tls-cert", help="serve HTTPS with this certificate (PEM)")
    parser.add_argument("--tls-key", help="and this private key (PEM)")
    parser.add_argument(
        "--insecure",
        action="store_true",
        help="serve a non-loopback address without authentication (not recommended)",
    )
    parser.set_defaults(handler=_serve)


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    from enclave.gateway.serve import serve

    overrides = dict(
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        **{
            "engine.model": args.model,
            "engine.served_model_names": args.served_model_name,
            "engine.threads": args.threads,
            "engine.ctx_size": args.ctx_size,
            "engine.parallel": args.parallel,
            "engine.enabled": False if args.no_engine else None,
            "auth.mode": "off" if args.insecure else None,
        },
    )
    # A reload reads the file again and applies the same flags on top.
    source = ConfigSource(args.config, {k: v for k, v in overrides.items() if v is not None})
    settings = apply_overrides(settings, **overrides)
    if args.workers != 1:
        from enclave.gateway.workers import serve_workers

        serve_workers(settings, source, args.workers, insecure=args.insecure)
    else:
        serve(settings, source, insecure=args.insecure)
    return 0
