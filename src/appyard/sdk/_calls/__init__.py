"""Every SDK call written once, as a generator of effects: pure, no I/O (see ``effects``).

``Api`` and ``AsyncApi`` are thin shells over these: each method hands a call to its core,
which performs the effects with blocking I/O (``SyncCore``) or with asyncio (``AsyncCore``).
"""
