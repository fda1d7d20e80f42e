"""`vcdn appliance-ctl`: the operator's one command against a running appliance.

    vcdn appliance-ctl status|drain|undrain|fill-now|purge TITLE [--appliance URL] [--config FILE]

The operator token comes from ``VCDN_OPERATOR_TOKEN`` or the appliance's settings file
(``operator_token`` / ``operator_token_file``), never from a flag. `format_status` is pure,
so what an operator reads is tested without a server.
"""

from __future__ import annotations

import argparse
import json
import ssl
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Final

from vcdn import tls, tls_io
from vcdn.errors import ConfigError, UpstreamError
from vcdn.settings import env_value, read_toml
from vcdn.titles import validate_title

DEFAULT_ADMIN: Final = "http://127.0.0.1:8081"
TIMEOUT: Final = 10.0
ACTIONS: Final = ("status", "drain", "undrain", "fill-now", "purge")


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def _ago(then: float | None, now: float) -> str:
    return "never" if then is None else f"{max(0.0, now - then):.1f} s ago"


def format_status(s: dict[str, Any], now: float | None = None) -> str:
    """The readable summary of `GET /api/v1/status`."""
    now = time.time() if now is None else now
    cache, fill, served = s.get("cache", {}), s.get("fill", {}), s.get("served", {})
    used, capacity = cache.get("bytes_used", 0), cache.get("capacity", 0) or 1
    lines = [
        f"appliance {s.get('appliance')} (site {s.get('site')}): {s.get('state')}, "
        f"reports {s.get('health')}",
    ]
    control = "registered" if s.get("registered") else "NOT registered"
    beat = _ago(s.get("last_heartbeat"), now)
    err = f"; last error: {s['heartbeat_error']}" if s.get("heartbeat_error") else ""
    lines.append(f"  control   {control}, last heartbeat {beat}{err}")
    lines.append(
        f"  cache     {human_bytes(used)} used of {human_bytes(capacity)} "
        f"({100 * used / capacity:.1f}%), {cache.get('objects', 0)} objects, "
        f"disk free {human_bytes(cache.get('disk_free', 0))}"
    )
    lines.append(
        f"  serving   hit ratio {100 * served.get('hit_ratio', 0.0):.1f}%, "
        f"{human_bytes(served.get('bytes', 0))} sent, "
        f"{served.get('connections', 0)} open connections"
    )
    window = f"window {fill.get('window')} ({'open' if fill.get('window_open') else 'closed'})"
    lines.append(
        f"  fill      {window}, {fill.get('titles_complete', 0)}/{fill.get('titles_total', 0)} "
        f"titles complete, {human_bytes(fill.get('bytes_missing', 0))} missing of "
        f"{human_bytes(fill.get('bytes_total', 0))}"
    )
    if fill.get("running"):
        lines.append(
            f"            running: {fill.get('current') or '-'}, "
            f"{human_bytes(fill.get('bytes_fetched', 0))} fetched this pass"
        )
    lines.append(
        f"            files from peers {fill.get('from_peers', 0)}, from origin "
        f"{fill.get('from_origin', 0)}, rejected {fill.get('rejected', 0)}; last pass "
        f"{_ago(fill.get('last_run_at'), now)}"
    )
    if fill.get("paused"):
        lines.append(f"            PAUSED: {fill['paused']}")
    if fill.get("last_error"):
        lines.append(f"            last error: {fill['last_error']}")
    upstream = s.get("upstream", {})
    if not upstream:
        lines.append("  upstream  not checked yet")
    for i, (name, check) in enumerate(sorted(upstream.items())):
        label = "  upstream  " if i == 0 else "            "
        state = "ok" if check.get("ok") else "FAILING"
        detail = f" ({check['detail']})" if check.get("detail") else ""
        lines.append(f"{label}{name}: {state}{detail}")
    bgp = s.get("bgp")
    if bgp:
        lines.append(
            f"  bgp       {bgp.get('state')} with {bgp.get('neighbor')}, "
            f"{len(bgp.get('prefixes', []))} prefixes learned"
            + (f" ({', '.join(bgp['prefixes'][:4])}{', ...' if len(bgp['prefixes']) > 4 else ''})"
               if bgp.get("prefixes") else "")
        )
    for name, check in sorted(s.get("checks", {}).items()):
        if not check.get("ok"):
            lines.append(f"  check     {name}: FAILING ({check.get('detail', '')})")
    return "\n".join(lines)


def _token(config: Path | None) -> str:
    token = env_value("VCDN_OPERATOR_TOKEN") or ""
    if not token and config is not None:
        raw = read_toml(config)
        token = str(raw.get("operator_token") or "")
        if not token and raw.get("operator_token_file"):
            file = Path(str(raw["operator_token_file"]))
            file = file if file.is_absolute() else config.parent / file
            try:
                token = file.read_text().strip()
            except OSError as exc:
                raise ConfigError(
                    f"Cannot read operator_token_file '{file}': {exc.strerror}."
                ) from None
    if not token:
        raise ConfigError(
            "No operator token: set VCDN_OPERATOR_TOKEN or pass --config with the appliance's "
            "settings file."
        )
    return token


def _admin_url(args: argparse.Namespace) -> str:
    if args.appliance:
        return str(args.appliance).rstrip("/")
    if args.config is not None:
        raw = read_toml(args.config)
        host = str(raw.get("admin_host", "127.0.0.1"))
        if host in ("0.0.0.0", "::", ""):  # listening everywhere: reach it on loopback
            host = "127.0.0.1"
        elif ":" in host:
            host = f"[{host}]"
        scheme = "https" if raw.get("admin_tls") is True else "http"
        return f"{scheme}://{host}:{int(raw.get('admin_port', 8081))}"
    return DEFAULT_ADMIN


def _ca_bundle(args: argparse.Namespace) -> Path | None:
    """--ca-bundle, else the settings file's `ca_bundle` (else VCDN_CA_BUNDLE, else the
    system store: `vcdn.tls_io.client_context` decides)."""
    if args.ca_bundle is not None:
        return Path(args.ca_bundle)
    if args.config is not None:
        value = str(read_toml(args.config).get("ca_bundle") or "")
        if value:
            path = Path(value)
            return path if path.is_absolute() else args.config.parent / path
    return None


def call(base: str, method: str, path: str, token: str,
         ca_bundle: Path | None = None) -> dict[str, Any]:
    req = urllib.request.Request(
        base + path, method=method, headers={"Authorization": f"Bearer {token}"}
    )
    context = tls_io.client_context(ca_bundle) if base.startswith("https://") else None
    try:
        with urllib.request.urlopen(req, timeout=TIMEOUT, context=context) as resp:
            return json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as exc:
        try:
            detail = json.loads(exc.read()).get("detail", "")
        except (ValueError, AttributeError):
            detail = ""
        raise UpstreamError(f"The appliance answered {exc.code}: {detail or exc.reason}") from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        if isinstance(reason, ssl.SSLError):
            raise UpstreamError(tls.describe_failure(reason, "appliance admin API", base)) \
                from None
        raise UpstreamError(f"Cannot reach the appliance admin API at {base}: {reason}.") from None


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="vcdn appliance-ctl",
        description="Operate a running appliance through its admin API.",
        epilog="The operator token is read from VCDN_OPERATOR_TOKEN or the --config file.",
    )
    p.add_argument("action", choices=ACTIONS)
    p.add_argument("title", nargs="?", help="the title to purge (purge only)")
    p.add_argument("--appliance", help=f"admin API base URL (default {DEFAULT_ADMIN})")
    p.add_argument("--config", type=Path, help="the appliance's settings file (token, address)")
    p.add_argument("--json", action="store_true", help="print the raw JSON answer")
    p.add_argument("--ca-bundle", type=Path,
                   help="CA certificates to verify an https:// admin API with (default: the "
                   "settings file's ca_bundle, VCDN_CA_BUNDLE, or the system store)")
    return p


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    if args.action == "purge" and not args.title:
        print("vcdn appliance-ctl: purge needs a TITLE.", file=sys.stderr)
        return 2
    if args.action != "purge" and args.title:
        print(f"vcdn appliance-ctl: {args.action} takes no argument.", file=sys.stderr)
        return 2
    if args.title:
        validate_title(args.title)  # before it goes into a URL path
    token = _token(args.config)
    base = _admin_url(args)
    ca = _ca_bundle(args)
    if args.action == "status":
        answer = call(base, "GET", "/api/v1/status", token, ca)
        print(json.dumps(answer, indent=2) if args.json else format_status(answer))
        return 0
    path = f"/api/v1/purge/{args.title}" if args.action == "purge" else f"/api/v1/{args.action}"
    answer = call(base, "POST", path, token, ca)
    if args.json:
        print(json.dumps(answer, indent=2))
    elif args.action == "purge":
        print(f"purged {answer.get('title')}: {answer.get('objects_removed', 0)} objects removed")
    else:
        print(f"{args.action}: ok")
    return 0
