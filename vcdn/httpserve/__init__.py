"""HTTP serving of stored representations, shared by the origin and the edge.

``plan`` (pure: preconditions + Range → status, fields, spans), ``multipart`` (pure:
multipart/byteranges layout), ``validators`` (pure: ETags, HTTP dates), ``media`` (pure:
types, Cache-Control), ``cors`` (pure), ``paths`` (URL path → file under a root, openat2),
``send`` (aiohttp adapter: sendfile whatever the loop), ``hot`` (fast path before
routing), ``middleware`` (errors → JSON), ``server`` (limits, start, clean stop).
"""
