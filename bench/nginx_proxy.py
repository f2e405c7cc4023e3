"""Debian's nginx as a column of ``bench/gateway_overhead.py``: the honest floor for a
proxy. A plain reverse proxy with kept-alive connections to the same fake upstream, no
access log, no buffering of streams, one process (``master_process off``, so the CPU the
bench reads from /proc is all of it) pinned to the proxy's CPU like the others.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bench.overhead_report import NGINX
from bench.servers import HOST, Server, own_env, serve
from tests.fakes.nginx import nginx_path
from tests.fakes.procs import free_port


def config_text(base: Path, port: int, upstream_port: int) -> str:
    temp = "".join(
        f"    {kind}_temp_path {base}/tmp/{kind};\n"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    user = "user root;\n" if os.geteuid() == 0 else ""  # workers must reach the temp files
    return f"""{user}daemon off;
master_process off;
worker_processes 1;
pid {base}/nginx.pid;
error_log {base}/error.log warn;
events {{ worker_connections 8192; }}
http {{
    access_log off;
{temp}    upstream fake {{
        server {HOST}:{upstream_port};
        keepalive 512;
    }}
    server {{
        listen {HOST}:{port} backlog=4096;
        keepalive_requests 1000000;
        location / {{
            proxy_pass http://fake;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
            proxy_read_timeout 300s;
        }}
    }}
}}
"""


@contextmanager
def run_nginx(upstream: Server, cpu: int | None, logs: Path) -> Iterator[Server]:
    binary = nginx_path()
    if binary is None:
        raise RuntimeError("nginx is not installed (apt-get install nginx-light), or --no-nginx")
    base = logs / "nginx"
    for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (base / "tmp" / kind).mkdir(parents=True, exist_ok=True)
    port = free_port()
    conf = base / "nginx.conf"
    conf.write_text(config_text(base, port, upstream.port))
    cmd = [binary, "-c", str(conf), "-p", str(base), "-e", str(base / "error.log")]
    with serve(
        NGINX, cmd, port=port, health="/health", env=own_env(), cpu=cpu, logs=logs, timeout=30
    ) as server:
        yield server
