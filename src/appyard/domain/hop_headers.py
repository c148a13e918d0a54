"""The headers of one HTTP hop (RFC 9110, 7.6.1): a proxy never passes them on, either way.

The server's page proxy and relay and the agent's side of the tunnel all proxy HTTP, so they
share this one list; each adds what is its own to drop (``host``, the platform's headers).
"""

from __future__ import annotations

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
