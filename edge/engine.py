"""One edge worker's engine, `Edge`: the in-process API the application and the
appliance daemon drive (store, stats, RAM tier, upstreams, fills), and the keys under
which the aiohttp application holds it and the answer's Cache-Status.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Final, TypeVar

import aiohttp
from aiohttp import web

from edge import cachestatus
from edge.fastroutes import FastRoutes
from edge.fill import Fills
from edge.llcrowd import Crowds
from edge.negative import NegativeCache
from edge.policies import make_policy
from edge.serve import RamCache
from edge.settings import EdgeSettings
from edge.stats import EdgeStats
from edge.store import CacheStore
from edge.upstream import HttpUpstream, Tuning, Upstream, UpstreamChain
from vcdn import peering, tokens
from vcdn.httpserve import media
from vcdn.metrics import new_registry
from vcdn.tls_io import client_connector

T = TypeVar("T")
FLUSH_EVERY: Final = 5.0


class Edge:
    """The in-process API of one edge worker; the appliance daemon drives it directly.

    ``store`` (`CacheStore`: import_file, has, pin_title, purge, stats), ``stats``
    (`EdgeStats`: hit_ratio, sent, take_title_requests()), ``draining`` (keep serving,
    but the appliance tells steering to send no new clients).
    """

    def __init__(self, settings: EdgeSettings, store: CacheStore | None = None) -> None:
        self.settings = settings
        self.store = store or CacheStore(
            settings.cache_dir, settings.capacity, make_policy(settings.eviction)
        )
        self.keys = settings.keys()
        self.registry = new_registry()
        self.stats = EdgeStats(self.registry, self.store)
        self.ram = RamCache(settings.ram_cache, settings.ram_object_max)
        self.draining = False
        #: The fast path's memory of appliance URLs (their paths and verified tokens).
        self.fast_routes = FastRoutes(settings.auth)
        self.negative = NegativeCache()
        #: The store's purge generation this worker's memory is consistent with.
        self._generation = self.store.generation.read()
        self._purges = self.store.generation.purges()
        self._removals = self.store.last_removal()
        #: Whole fills started behind a range pass-through (kept so they are not lost).
        self.background: set[asyncio.Task[None]] = set()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="edge-store")
        self.session: aiohttp.ClientSession | None = None
        self.chain: UpstreamChain | None = None
        self.fills: Fills | None = None
        #: Players blocking on the same LL-HLS playlist request, answered at once.
        self.crowds = Crowds(self)

    def check_purges(self) -> None:
        """Before answering anything: if some process purged or invalidated objects since
        we last looked (`edge.generation`), drop what this worker holds beyond the index:
        RAM copies, kept answers, and fills a new request could still join. After a purge,
        all of them; after invalidations, the kept answers and fills of those URLs only
        (`CacheStore.removed_since`): they are the only copy of a kept answer, and an
        unrelated URL's would otherwise be asked for again."""
        current = self.store.generation.read()
        if current != self._generation:
            self._generation = current
            purges, self._purges = self._purges, self.store.generation.purges()
            purged = purges != self._purges
            self.ram.clear()
            if purged:
                self.negative.clear()
            else:
                self._removals, keys = self.store.removed_since(self._removals)
                for key in keys:
                    self.negative.drop(key)
            if self.fills is not None:
                self.fills.detach(purge=purged)

    def set_keys(self, keys: tokens.KeyRing) -> None:
        """New signing keys (a reload): forget the fast path's tokens verified with the old."""
        self.keys = keys
        self.fast_routes.forget_tokens()

    async def run(self, func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run a blocking store call on the store's own thread."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(func, *args, **kwargs))

    async def start(self, upstreams: list[Upstream] | None = None) -> None:
        s = self.settings
        if upstreams is None:
            self.session = aiohttp.ClientSession(
                # https:// upstreams and peers are verified against `ca_bundle` (else
                # VCDN_CA_BUNDLE, else the system store), presenting the client
                # certificate when one is configured.
                connector=client_connector(s.ca_bundle, s.tls_client_cert, s.tls_client_key,
                                           limit=0, ttl_dns_cache=60),
                cookie_jar=aiohttp.DummyCookieJar(),
                auto_decompress=False,
                skip_auto_headers=("User-Agent", "Accept-Encoding"),
            )
            tuning = Tuning(
                connect_timeout=s.connect_timeout,
                read_timeout=s.read_timeout,
                retries=s.retries,
                breaker_threshold=s.breaker_threshold,
                breaker_reset=s.breaker_reset,
                retry_answers=s.mode == "appliance",
            )
            peer_tuning = Tuning(
                connect_timeout=min(0.5, s.connect_timeout),
                read_timeout=s.read_timeout,
                retries=0,
                breaker_threshold=s.breaker_threshold,
                breaker_reset=s.breaker_reset,
            )
            upstreams = [
                *(HttpUpstream(p, self.session, kind="peer", tuning=peer_tuning) for p in s.peers),
                HttpUpstream(s.upstream, self.session, kind="origin", tuning=tuning),
            ]
        self.chain = UpstreamChain(upstreams)
        self.fills = Fills(
            self.store,
            self.chain,
            run=self.run,
            content_type=media.media_type,
            on_fill=self.stats.filled,
        )
        await self.run(self.store.load if len(self.store.policy) == 0 else self.store.sync)

    async def stop(self) -> None:
        await self.crowds.close()
        if self.fills is not None:
            await self.fills.close()
        if self.session is not None:
            await self.session.close()
        await self.run(self.store.flush_access)
        self._executor.shutdown(wait=True)

    async def flush_loop(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_EVERY)
            await self.run(self.store.flush_access)

    # --- targets -----------------------------------------------------------------------

    def video_target(self, title: str, path: str) -> Callable[[Upstream], str]:
        origin_path = peering.origin_target(title, path)

        def target(up: Upstream) -> str:
            if up.kind == "peer":
                return peering.target(self.keys, title, path, time.time())
            return origin_path

        return target


EDGE_KEY: Final = web.AppKey("vcdn_edge", Edge)
#: This edge's Cache-Status entry for the answer (RFC 9211), set where the outcome is
#: decided (`mark`) and added to the head by the application.
CACHE_STATUS: Final = web.RequestKey("vcdn_cache_status", str)




def mark(request: web.Request, result: str, **kw: Any) -> None:
    """Record this edge's Cache-Status entry for the answer (`edge.cachestatus.value`)."""
    request[CACHE_STATUS] = cachestatus.value(result, **kw)
