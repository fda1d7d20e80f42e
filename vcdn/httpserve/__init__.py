"""HTTP serving of stored representations, shared by the origin and the edge.

``plan`` (pure: preconditions + Range → status, headers, spans), ``multipart`` (pure:
multipart/byteranges layout), ``validators`` (pure: ETags, HTTP dates), ``media`` (pure:
types, Cache-Control), ``paths`` (URL path → file under a root), ``cors`` (pure),
``send`` (aiohttp adapter: sendfile whatever the loop), ``middleware`` (errors → JSON).
"""
