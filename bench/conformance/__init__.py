"""HTTP caching conformance: the npm ``http-cache-tests`` suite against the edge in proxy
mode and against nginx ``proxy_cache`` in the same run (`bench.conformance.suite`)."""
