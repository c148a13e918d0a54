"""An agent's machine (cores, memory, disk, GPUs) and labels: stored from its hello and its
polls, shown with the agent.

The agent sends its inventory with every hello and, only when it changed, with a poll (no
request of its own); the wire model (``schemas.agents.AgentInventory``) caps and checks it, so
what reaches here is sane. The figures and labels are columns of the agent's row; each GPU is a
row of ``agent_gpus`` keyed by its UUID and kept while it is reported, so that what points at a
GPU (a placement's reservation) survives a report that did not change it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, cast

from sqlalchemy import Table, select
from sqlalchemy.orm import Session

from appyard.domain.status import ON_AGENT
from appyard.schemas.agents import AgentInventory, GpuInfo
from appyard.server import keys
from appyard.server.db.models import Agent, AgentGpu, Task, utcnow
from appyard.server.notifier import emit

_AGENTS = cast(Table, Agent.__table__)
_GPUS = cast(Table, AgentGpu.__table__)


def store_inventory(s: Session, agent_id: int, inv: AgentInventory) -> None:
    """Write what the agent reported of its machine. The agent's row is updated first, so two
    reports of one agent (a retried hello and a poll) take turns on its lock (PostgreSQL;
    SQLite runs one write at a time anyway) and never insert the same GPU twice."""
    db = s.connection()
    team_id = db.execute(
        _AGENTS.update()
        .where(_AGENTS.c.id == agent_id)
        .values(
            cpus=inv.cpus,
            memory_mb=inv.memory_mb,
            memory_available_mb=inv.memory_available_mb,
            disk_free_mb=inv.disk_free_mb,
            disk_total_mb=inv.disk_total_mb,
            labels=dict(inv.labels),
            inventory_at=utcnow(),
        )
        .returning(_AGENTS.c.team_id)
    ).scalar()
    if team_id is not None:
        emit(s, keys.team(team_id))  # the team's agents page shows it at once
    have = {
        row.uuid: row
        for row in db.execute(
            select(
                _GPUS.c.id, _GPUS.c.uuid, _GPUS.c.gpu_index, _GPUS.c.name, _GPUS.c.memory_mb
            ).where(_GPUS.c.agent_id == agent_id)
        )
    }
    want = {g.uuid for g in inv.gpus}
    gone = [row.id for uuid, row in have.items() if uuid not in want]
    if gone:
        db.execute(_GPUS.delete().where(_GPUS.c.id.in_(gone)))
    for g in inv.gpus:
        row = have.get(g.uuid)
        if row is None:
            db.execute(
                _GPUS.insert().values(
                    agent_id=agent_id,
                    gpu_index=g.index,
                    uuid=g.uuid,
                    name=g.name,
                    memory_mb=g.memory_mb,
                )
            )
        elif (row.gpu_index, row.name, row.memory_mb) != (g.index, g.name, g.memory_mb):
            db.execute(
                _GPUS.update()
                .where(_GPUS.c.id == row.id)
                .values(gpu_index=g.index, name=g.name, memory_mb=g.memory_mb)
            )


def gpus_of(s: Session, agent_ids: Iterable[int]) -> dict[int, list[GpuInfo]]:
    """The GPUs of each of ``agent_ids`` (in one read), by index."""
    ids = sorted(set(agent_ids))
    out: dict[int, list[GpuInfo]] = {agent_id: [] for agent_id in ids}
    if not ids:
        return out
    rows = s.connection().execute(
        select(_GPUS.c.agent_id, _GPUS.c.gpu_index, _GPUS.c.uuid, _GPUS.c.name, _GPUS.c.memory_mb)
        .where(_GPUS.c.agent_id.in_(ids))
        .order_by(_GPUS.c.agent_id, _GPUS.c.gpu_index, _GPUS.c.id)
    )
    holders = _holders(s, ids)
    for r in rows:
        out[r.agent_id].append(
            GpuInfo(
                index=r.gpu_index,
                uuid=r.uuid,
                name=r.name,
                memory_mb=r.memory_mb,
                task_id=holders.get((r.agent_id, r.uuid)),
            )
        )
    return out


def _holders(s: Session, agent_ids: list[int]) -> dict[tuple[int, str], int]:
    """``(agent_id, GPU uuid) -> task id`` of the sessions that hold GPUs of these agents."""
    held: dict[tuple[int, str], int] = {}
    rows = s.execute(
        select(Task.id, Task.agent_id, Task.gpus).where(
            Task.agent_id.in_(agent_ids),
            Task.status.in_([st.value for st in ON_AGENT]),
            Task.gpus.is_not(None),
        )
    )
    for r in rows:
        for g in r.gpus or []:
            held[(r.agent_id, str(g.get("uuid")))] = r.id
    return held


def inventory_fields(a: Agent, gpus: list[GpuInfo]) -> dict[str, Any]:
    """The inventory part of an ``AgentInfo``."""
    return {
        "cpus": a.cpus,
        "memory_mb": a.memory_mb,
        "memory_available_mb": a.memory_available_mb,
        "disk_free_mb": a.disk_free_mb,
        "disk_total_mb": a.disk_total_mb,
        "gpus": gpus,
        "labels": dict(a.labels or {}),
        "inventory_at": a.inventory_at,
    }
