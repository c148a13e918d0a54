"""Placement: which agent a session may run on, the GPUs it gets there, and why it waits.

A session's need (``domain/resources.py``) is its app's ``resources`` as the start raised or
lowered them, stored on the task. Agents claim queued tasks (``services/agents.py``); a claim
takes a task only when its need fits what the claiming agent has free, and gives it GPUs of
that agent then, in the claim's transaction: an agent's claims are serialized on its row (its
poll writes ``last_seen_at`` first), and a task is claimed once (compare-and-set on its
status), so two racing starts never get the same GPU. What a session holds is read from the
tasks on the agent, so its end, its stop and the loss of its agent free it with no step of
their own.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from pydantic_core import PydanticCustomError
from sqlalchemy import select
from sqlalchemy.orm import Session

from appyard.domain.resources import Gpu, Machine, Need, never_fits, wait_reason
from appyard.domain.status import ON_AGENT, Status
from appyard.errors import BadRequestError
from appyard.schemas.manifest import AMOUNT_KEYS, Manifest, ResourceAmounts, check_labels
from appyard.server.db.models import Agent, AgentGpu, Task

ON_AGENT_VALUES = [st.value for st in ON_AGENT]


def need_for_start(manifest: Manifest, override: Mapping[str, Any] | None) -> Need:
    """The session's need: the manifest's ``resources``, with what the start asked instead
    (each amount from 0 up to the manifest's ``max``, else its own value; labels added)."""
    spec = manifest.resources
    base: dict[str, Any] = spec.model_dump(include=set(AMOUNT_KEYS)) if spec else {}
    labels: dict[str, str] = dict(spec.agent_labels) if spec else {}
    if override:
        if not isinstance(override, Mapping):
            raise BadRequestError("resources must be a JSON object", field="resources")
        known = {*AMOUNT_KEYS, "agent_labels"}
        unknown = sorted(set(override) - known)
        if unknown:
            raise BadRequestError(
                f"resources.{unknown[0]} is not known; use {sorted(known)}",
                field=f"resources.{unknown[0]}",
            )
        amounts = {k: v for k, v in override.items() if k != "agent_labels"}
        try:
            asked = ResourceAmounts.model_validate(amounts)
        except ValueError as exc:
            raise _start_error(exc) from None
        for key in asked.model_fields_set:
            value = getattr(asked, key)
            limit = spec.limit(key) if spec is not None else 0.0
            if value > limit:
                where = (
                    f"its config.json's resources.max.{key}"
                    if spec is not None
                    and spec.max is not None
                    and key in spec.max.model_fields_set
                    else f"its config.json's resources.{key}"
                    if spec is not None
                    else "its config.json asks for no resources"
                )
                raise BadRequestError(
                    f"resources.{key} may be at most {limit:g} for this app ({where}); "
                    "ask for less, or publish a release whose resources.max allows more.",
                    field=f"resources.{key}",
                )
            base[key] = value
        if "agent_labels" in override:
            try:
                labels.update(check_labels(override["agent_labels"]))
            except PydanticCustomError as exc:
                at = (exc.context or {}).get("at")
                field = "resources.agent_labels" + (f".{at}" if at else "")
                raise BadRequestError(f"{field} {exc.message()}", field=field) from None
    return Need(
        gpus=int(base.get("gpus", 0)),
        gpu_memory_mb=int(base.get("gpu_memory_mb", 0)),
        memory_mb=int(base.get("memory_mb", 0)),
        cpus=float(base.get("cpus", 0)),
        labels=labels,
    )


def _start_error(exc: ValueError) -> BadRequestError:
    errors = getattr(exc, "errors", None)
    first = errors(include_url=False)[0] if callable(errors) else {}
    ctx = first.get("ctx") or {}
    parts = ["resources", *(str(p) for p in first.get("loc", ()))]
    if ctx.get("at"):
        parts.append(str(ctx["at"]))
    field = ".".join(parts)
    problem = ctx.get("problem") or first.get("msg") or str(exc)
    return BadRequestError(f"{field} {problem}", field=field)


def machines(s: Session, team_id: int, agent_ids: Iterable[int] | None = None) -> list[Machine]:
    """The team's agents (or those of ``agent_ids``) as placement sees them now."""
    stmt = select(Agent).where(Agent.team_id == team_id)
    if agent_ids is not None:
        stmt = stmt.where(Agent.id.in_(list(agent_ids)))
    agents = list(s.scalars(stmt.order_by(Agent.id)))
    if not agents:
        return []
    ids = [a.id for a in agents]
    gpus: dict[int, list[Gpu]] = {i: [] for i in ids}
    for row in s.execute(
        select(AgentGpu.agent_id, AgentGpu.gpu_index, AgentGpu.uuid, AgentGpu.memory_mb).where(
            AgentGpu.agent_id.in_(ids)
        )
    ):
        gpus[row.agent_id].append(Gpu(row.gpu_index, row.uuid, int(row.memory_mb)))
    out = {
        a.id: Machine(
            agent_id=a.id,
            name=a.name,
            online=bool(a.online),
            slots=a.slots,
            cpus=a.cpus,
            memory_mb=a.memory_mb,
            gpus=gpus[a.id],
            labels=dict(a.labels or {}),
        )
        for a in agents
    }
    for row in s.execute(
        select(Task.agent_id, Task.resources, Task.gpus).where(
            Task.agent_id.in_(ids), Task.status.in_(ON_AGENT_VALUES)
        )
    ):
        m = out[row.agent_id]
        held = [Gpu(int(g["index"]), str(g["uuid"]), 0) for g in row.gpus or []]
        m.take(Need.from_json(row.resources), held)
    return list(out.values())


def check_start(
    s: Session, team_id: int, need: Need, agent_id: int | None, queue_anyway: bool
) -> None:
    """422 on ``resources`` when no agent of the team (or the one named) could ever run a
    session of ``need``, unless the caller asked to queue it anyway."""
    if queue_anyway or not need.asks():
        return
    why = never_fits(need, machines(s, team_id), agent_id)
    if why is not None:
        where = f"agent {agent_id}" if agent_id is not None else "any agent of the team"
        raise BadRequestError(
            f"This session can never run on {where}: {why}. Ask for less (resources), add an "
            "agent that has it, or pass queue_anyway=true to queue it until one does.",
            field="resources",
        )


def gpus_json(gpus: Iterable[Gpu]) -> list[dict[str, Any]]:
    return [{"index": g.index, "uuid": g.uuid} for g in gpus]


def why_waiting(s: Session, t: Any) -> str | None:
    """Why a queued task waits (None for any other)."""
    if Status(t.status) is not Status.QUEUED:
        return None
    return wait_reason(Need.from_json(t.resources), machines(s, t.team_id), t.requested_agent_id)
