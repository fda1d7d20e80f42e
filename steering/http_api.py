"""The playback API: `GET /v1/playback/{title}` → ranked, signed master-playlist URLs.

Order: the chosen site's appliances (rendezvous-ranked for the title), then the next
site's, then the origin as the last resort. One token (vcdn.tokens, the first signing key)
serves every appliance URL: it binds the title and expiry, not the host.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from typing import Final

from aiohttp import web
from prometheus_client import Counter, Gauge

from steering.select import Client
from steering.service import Steering
from steering.sync import ControlClient
from vcdn.errors import ClientError, UpstreamError
from vcdn.httpserve.cors import ALLOW_ORIGIN, preflight_headers
from vcdn.metrics import REGISTRY_KEY, metrics_handler, new_registry
from vcdn.tokens import parse

STEERING_KEY: Final = web.AppKey("steering", Steering)
CONTROL_KEY: Final = web.AppKey("control", ControlClient)
TITLE_RE: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
SITES_IN_ANSWER: Final = 2

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    a = ipaddress.ip_address(text.strip())
    if isinstance(a, ipaddress.IPv6Address) and a.ipv4_mapped is not None:
        return a.ipv4_mapped
    return a


def client_address(peer: str, forwarded_for: str | None, trusted: Sequence[Network]) -> str:
    """The viewer's address: the peer, or, when the peer is a trusted proxy, the right-most
    X-Forwarded-For entry that is not itself a trusted proxy (entries to its left could
    have been written by the client)."""
    addr = _ip(peer)
    if not forwarded_for or not any(addr in net for net in trusted):
        return str(addr)
    hops = [h.strip() for h in forwarded_for.split(",")]
    chosen = addr
    for hop in reversed(hops):
        try:
            chosen = _ip(hop)
        except ValueError:
            raise ClientError(f"X-Forwarded-For entry {hop!r} is not an IP address.") from None
        if not any(chosen in net for net in trusted):
            break
    return str(chosen)


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


HLS_MANIFEST: Final = "master.m3u8"
#: MPEG-TS titles have no MPD (DASH needs fMP4); their `dash` URLs answer 404.
DASH_MANIFEST: Final = "manifest.mpd"


async def playback(request: web.Request) -> web.Response:
    steering = request.app[STEERING_KEY]
    s = steering.settings
    title = request.match_info["title"]
    if not TITLE_RE.match(title):
        return _error(400, f"Title id {title[:64]!r} is not valid: use letters, digits, . _ -.")
    try:
        ip = client_address(request.remote or "127.0.0.1",
                            request.headers.get("X-Forwarded-For"), request.app[TRUSTED_KEY])
        if not await steering.title_known(request.app[CONTROL_KEY], title):
            return _error(404, f"Title {title!r} is not in the catalog.")
    except (ClientError, UpstreamError) as exc:
        code = 503 if isinstance(exc, UpstreamError) else exc.status_hint
        return _error(code, exc.message)
    decision = steering.decide(Client.of(ip), title)
    now = steering.clock()
    # A token never outlives its key (the key's not_after ends the rotation grace).
    token = steering.keys.sign_current(title, now, s.token_ttl)
    if token is None:
        return _error(503, "No signing key is valid now; check the keys' not_before/not_after.")
    expires = parse(token).expires
    # The same bases serve both manifests: `urls` (HLS, as before) and `dash`, in the
    # same order, so a player picks the first of whichever protocol it speaks.
    bases = []
    sites = set(decision.sites[:SITES_IN_ANSWER])
    for node in decision.nodes:
        if node.site in sites:
            bases.append(f"{node.public_url}/s/{token}/{title}/")
    if s.origin_url:
        bases.append(f"{s.origin_url.rstrip('/')}/v/{title}/")
    if not bases:
        return _error(503, "No healthy appliance is known and no origin URL is configured.")
    request.app[PLAYBACK_KEY].labels(decision.reason).inc()
    return web.json_response({"title": title, "urls": [b + HLS_MANIFEST for b in bases],
                              "dash": [b + DASH_MANIFEST for b in bases], "expires": expires,
                              "sites": list(decision.sites[:SITES_IN_ANSWER])})


async def healthz(request: web.Request) -> web.Response:
    steering = request.app[STEERING_KEY]
    st = steering.status
    stale = steering.stale()
    body = {
        "status": "degraded" if stale else "ok",
        "view": {
            "version": steering.view.version,
            "usable_appliances": len(steering.view.nodes),
            "dropped_appliances": list(steering.view.dropped),
            "stale": stale,
            "last_ok": st.last_ok,
            "age_seconds": None if st.last_ok is None else round(steering.clock() - st.last_ok, 3),
        },
        "control_error": st.last_error or None,
        "control": control_status(request.app[CONTROL_KEY], st.last_error),
    }
    # 200 either way: a stale view still answers; the body says how fresh it is.
    return web.json_response(body)


def control_status(control: ControlClient, last_error: str) -> dict[str, object]:
    """Which control replicas steering reaches: when none does, it answers from its last
    good view (`view.stale` says how old) and `all_unreachable` says why."""
    reachable = 0 if last_error else control.reachable()
    return {
        "urls": control.urls,
        "current": control.current,
        "reachable": reachable,
        "all_unreachable": bool(last_error),
    }


TRUSTED_KEY: Final = web.AppKey("trusted_proxies", list)
PLAYBACK_KEY: Final = web.AppKey("playback_counter", Counter)


def make_app(steering: Steering, control: ControlClient) -> web.Application:
    app = web.Application()
    app[STEERING_KEY] = steering
    app[CONTROL_KEY] = control
    app[TRUSTED_KEY] = [ipaddress.ip_network(n, strict=False)
                        for n in steering.settings.trusted_proxies]
    registry = new_registry()
    app[REGISTRY_KEY] = registry
    app[PLAYBACK_KEY] = Counter("vcdn_steering_playback_total",
                                "Playback answers by mapping reason", ["reason"],
                                registry=registry)
    st, r = steering.status, steering.responder
    gauges = {
        "vcdn_steering_view_usable_appliances": ("Appliances in answers",
                                                 lambda: len(steering.view.nodes)),
        "vcdn_steering_view_stale": ("1 when the control view is stale",
                                     lambda: float(steering.stale())),
        "vcdn_steering_control_errors": ("Failed control polls", lambda: st.errors),
        "vcdn_steering_control_reachable": (
            "Control replicas that answered when last asked (0: serving the last good view)",
            lambda: 0 if st.last_error else control.reachable()),
        "vcdn_steering_control_replicas": ("Control replicas configured",
                                           lambda: len(control.urls)),
        "vcdn_steering_dns_cache_hits": ("DNS answers from the cache", lambda: r.hits),
        "vcdn_steering_dns_cache_misses": ("DNS answers built", lambda: r.misses),
    }
    for name, (doc, fn) in gauges.items():
        Gauge(name, doc, registry=registry).set_function(fn)
    app.router.add_get("/v1/playback/{title}", playback)
    app.router.add_route("OPTIONS", "/v1/playback/{title}", preflight)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics_handler)
    app.on_response_prepare.append(_allow_any_origin)
    return app


async def _allow_any_origin(request: web.Request, response: web.StreamResponse) -> None:
    """Web players call the playback API from their own origin: every answer, errors
    included, must be readable cross-origin (the Fetch standard's CORS protocol). The URLs
    carry their own signed tokens; no cookie or credential is involved."""
    response.headers.setdefault(*ALLOW_ORIGIN)


async def preflight(request: web.Request) -> web.Response:
    return web.Response(status=204, headers=dict(preflight_headers(request.headers)))
