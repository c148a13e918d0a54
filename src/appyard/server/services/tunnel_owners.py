"""Which server replica each agent's tunnel is connected to (``agents.tunnel_replica``).

A replica run with ``APPYARD_REPLICA_URL`` writes its address on the agent's row when the
agent's tunnel connects to it, and clears it when the tunnel closes (only if it still names
this replica: a tunnel that moved to another replica meanwhile keeps its new owner). Another
replica reads it to relay a request into one of the agent's sessions (``server/relay.py``).
A replica that dies without clearing leaves a stale address: the relay then finds nothing
answering there, and says so.
"""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from appyard.server.db.models import Agent


def claim(s: Session, *, agent_id: int, replica: str) -> None:
    s.execute(update(Agent).where(Agent.id == agent_id).values(tunnel_replica=replica))


def release(s: Session, *, agent_id: int, replica: str) -> None:
    s.execute(
        update(Agent)
        .where(Agent.id == agent_id, Agent.tunnel_replica == replica)
        .values(tunnel_replica=None)
    )


def owner(s: Session, *, agent_id: int) -> str | None:
    """The replica the agent's tunnel is connected to, as last recorded (None: none)."""
    return s.scalar(select(Agent.tunnel_replica).where(Agent.id == agent_id))
