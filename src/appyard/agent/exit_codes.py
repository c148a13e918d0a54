"""The agent process's exit codes, named in one place (as dramatiq names its ``RET_*``).

The agent returns them from ``main``; ``appyard up`` reads them to say why its agent ended.
They agree with Python's own: an uncaught exception exits 1, an argparse usage error 2.
This module imports nothing, so that any process can read the names cheaply.
"""

from __future__ import annotations

#: asked to stop (SIGTERM, SIGINT or SIGHUP)
RET_OK = 0
#: the agent broke on an unexpected error (its log says which)
RET_CRASHED = 1
#: a bad command line or configuration, or its work folder is in use by another agent
RET_CONFIG = 2
#: the server refused the agent: a bad or revoked token, or the agent was deleted
RET_REFUSED = 3

_MEANINGS = {
    RET_OK: "it was asked to stop",
    RET_CRASHED: "it broke on an unexpected error; its log says which",
    RET_CONFIG: "a bad command line or configuration, or its work folder is another agent's",
    RET_REFUSED: "the server refused it: a bad or revoked token, or the agent was deleted",
}


def meaning(code: int) -> str | None:
    """What an agent's exit code says, for messages; None for one it never uses (a signal's)."""
    return _MEANINGS.get(code)
