"""The edge cache engine: what serves video bytes to players (see docs/edge.md).

In-process API (the appliance daemon drives the same engine)::

    from edge.app import Edge, make_app, EDGE_KEY
    from edge.settings import EdgeSettings
    from edge.workers import start_edge          # socket + hit fast path

    edge = Edge(EdgeSettings(cache_dir=..., upstream="http://origin:8080", signing_keys=...))
    edge.store.reconcile()                       # once, before serving (no other worker up)
    app = make_app(edge.settings, edge=edge)     # aiohttp app; its cleanup_ctx starts/stops edge
    runner, url = await start_edge(app, edge.settings)

    await edge.run(edge.store.import_file, title, path, src, size, sha256,
                   content_type=..., pinned=True)          # verified manifest fill
    edge.store.has(title, path); edge.store.pin_title(title); edge.store.unpin_title(title)
    await edge.run(edge.store.purge, title=title)          # or prefix="title/360p/"
    edge.store.stats()            # StoreStats(objects, bytes_used, capacity, free_bytes, ...)
    edge.stats.hit_ratio, edge.stats.sent, edge.stats.take_title_requests()
    edge.draining = True          # keeps serving; the appliance tells steering

Modules: ``store`` (disk cache and index), ``eviction`` (policy interface, LRU),
``freshness`` (RFC 9111, pure), ``upstream`` (peers/origin, retries, breaker), ``fill``
(coalesced streamed fills across workers), ``serve`` (responses),
``fastpath`` (the hit decision, answered by `vcdn.httpserve.hitproto`), ``routing`` (the
one router, token check included), ``fastroutes`` (the hit decision's memory of routes:
paths and verified tokens apart), ``engine`` (`Edge`), ``miss`` and ``proxy`` (what hits
do not answer), ``generation`` (purges seen by every worker), ``app`` (the aiohttp
application), ``workers`` and ``cli``.
"""
