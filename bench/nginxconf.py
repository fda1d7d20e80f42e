"""nginx as the hit benchmarks run it, written once: the plain (`bench.edge`) and the
HTTPS (`bench.tls`) comparisons must give it the same tuning, or a ratio would compare
configurations rather than servers.

One worker (the other side runs one too), sendfile with TCP_CORK and TCP_NODELAY, an
open-file cache, keep-alive without a practical request limit, no access log, temporary
paths inside the run's directory, and the video types. `server` is the one server block.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

_HTTP: Final = """\
daemon off;
master_process on;
worker_processes 1;
pid {work}/{name}.pid;
error_log {work}/{name}-error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_requests 1000000;
    keepalive_timeout 65;
    open_file_cache max=1000 inactive=60s;
    client_body_temp_path {work}/client_body;
    proxy_temp_path {work}/proxy;
    fastcgi_temp_path {work}/fastcgi;
    uwsgi_temp_path {work}/uwsgi;
    scgi_temp_path {work}/scgi;
    types {{
        application/vnd.apple.mpegurl m3u8;
        video/mp4 mp4 m4s;
        video/mp2t ts;
        application/json json;
    }}
    default_type application/octet-stream;
{server}
}}
"""

#: The files of a title under /v/, as the edge and the origin serve them.
VIDEO_LOCATION: Final = """\
        location /v/ {{
            alias {root}/;
            add_header Access-Control-Allow-Origin *;
        }}"""


def static_conf(work: Path, name: str, server: str) -> str:
    """The whole nginx.conf; its pid and error log are `{work}/{name}.pid` and
    `{work}/{name}-error.log`."""
    return _HTTP.format(work=work, name=name, server=server)


def video_server(root: Path, listen: str, extra: str = "") -> str:
    """A server block on `listen` (e.g. ``127.0.0.1:8080`` or ``127.0.0.1:8443 ssl``)
    serving `root` under /v/; `extra`: more directives inside it."""
    lines = [f"    server {{\n        listen {listen};"]
    if extra:
        lines.append(extra.rstrip())
    lines.append(VIDEO_LOCATION.format(root=root))
    lines.append("    }")
    return "\n".join(lines)
