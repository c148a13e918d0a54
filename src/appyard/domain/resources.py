"""What a session needs of a machine, what a machine has free, and why a session waits.

Pure: the server builds ``Machine`` views from its database (``services/placement.py``) and
asks them whether a ``Need`` fits; the agent's claim takes the GPUs ``fit`` chose. Every "no"
is a sentence a user can act on ("all 4 slots of agent 1 (box) are busy", "gpu-box-1: 1 of 4
GPUs free"), because a task that waits must say why.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Need:
    """A session's resources: amounts (0: not asked) and the labels its agent must carry."""

    gpus: int = 0
    gpu_memory_mb: int = 0
    memory_mb: int = 0
    cpus: float = 0
    labels: Mapping[str, str] = field(default_factory=dict)

    def asks(self) -> bool:
        return bool(self.gpus or self.memory_mb or self.cpus or self.labels)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            k: v
            for k, v in (
                ("gpus", self.gpus),
                ("gpu_memory_mb", self.gpu_memory_mb),
                ("memory_mb", self.memory_mb),
                ("cpus", self.cpus),
            )
            if v
        }
        if self.labels:
            out["agent_labels"] = dict(self.labels)
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> Need:
        data = data or {}
        return cls(
            gpus=int(data.get("gpus", 0)),
            gpu_memory_mb=int(data.get("gpu_memory_mb", 0)),
            memory_mb=int(data.get("memory_mb", 0)),
            cpus=float(data.get("cpus", 0)),
            labels=dict(data.get("agent_labels") or {}),
        )

    def gpus_text(self) -> str:
        each = f" with {self.gpu_memory_mb} MB each" if self.gpu_memory_mb else ""
        return f"{_n(self.gpus, 'GPU')}{each}"


@dataclass(frozen=True)
class Gpu:
    index: int
    uuid: str
    memory_mb: int


@dataclass
class Machine:
    """An agent as placement sees it: what it has, and what its sessions hold now."""

    agent_id: int
    name: str
    online: bool
    slots: int
    #: None: the agent never said (an older agent): not checked
    cpus: int | None = None
    memory_mb: int | None = None
    gpus: list[Gpu] = field(default_factory=list)
    labels: Mapping[str, str] = field(default_factory=dict)
    #: sessions it holds now, and what they hold
    busy: int = 0
    used_gpus: set[str] = field(default_factory=set)
    used_memory_mb: int = 0
    used_cpus: float = 0

    @property
    def title(self) -> str:
        return f"agent {self.agent_id} ({self.name})"

    def _label_problem(self, need: Need) -> str | None:
        for k, v in sorted(need.labels.items()):
            if self.labels.get(k) != v:
                have = self.labels.get(k)
                has = f"has {k}={have}" if have is not None else f"has no label {k}"
                return f"{self.title} {has}, not {k}={v}"
        return None

    def _capacity_problem(self, need: Need) -> str | None:
        """Why ``need`` never fits here, even with nothing else running."""
        labels = self._label_problem(need)
        if labels:
            return labels
        if need.gpus:
            big = [g for g in self.gpus if g.memory_mb >= need.gpu_memory_mb]
            if len(big) < need.gpus:
                what = (
                    f"{len(big)} GPUs with {need.gpu_memory_mb} MB"
                    if need.gpu_memory_mb
                    else (_n(len(self.gpus), "GPU"))
                )
                return f"{self.title} has {what}, not {need.gpus}"
        if need.memory_mb and self.memory_mb is not None and self.memory_mb < need.memory_mb:
            return f"{self.title} has {self.memory_mb} MB of memory, not {need.memory_mb}"
        if need.cpus and self.cpus is not None and self.cpus < need.cpus:
            return f"{self.title} has {_n(self.cpus, 'CPU')}, not {need.cpus:g}"
        return None

    def free_gpus(self, need: Need) -> list[Gpu]:
        return [
            g
            for g in sorted(self.gpus, key=lambda g: g.index)
            if g.uuid not in self.used_gpus and g.memory_mb >= need.gpu_memory_mb
        ]

    def fit(self, need: Need) -> list[Gpu] | str:
        """The GPUs a session of ``need`` gets here now, or why it cannot start here now."""
        if not self.online:
            return f"{self.title} is offline"
        problem = self._capacity_problem(need)
        if problem:
            return problem
        if self.busy >= self.slots:
            return f"all {_n(self.slots, 'slot')} of {self.title} are busy"
        free = self.free_gpus(need)
        if len(free) < need.gpus:
            return f"{self.title}: {len(free)} of {_n(len(self.gpus), 'GPU')} free"
        if need.memory_mb and self.memory_mb is not None:
            left = self.memory_mb - self.used_memory_mb
            if left < need.memory_mb:
                return f"{self.title}: {max(0, left)} of {self.memory_mb} MB of memory free"
        if need.cpus and self.cpus is not None:
            left_cpus = self.cpus - self.used_cpus
            if left_cpus < need.cpus:
                return f"{self.title}: {max(0.0, left_cpus):g} of {self.cpus} CPUs free"
        return free[: need.gpus]

    def take(self, need: Need, gpus: Sequence[Gpu]) -> None:
        """A session of ``need`` placed here now holds ``gpus`` and its amounts."""
        self.busy += 1
        self.used_gpus.update(g.uuid for g in gpus)
        self.used_memory_mb += need.memory_mb
        self.used_cpus += need.cpus


def never_fits(need: Need, machines: Sequence[Machine], agent_id: int | None) -> str | None:
    """Why no agent (``agent_id``'s, when the start named one) could ever run ``need``,
    online or not, with nothing else running; None when one could."""
    if not need.asks():
        return None
    pool = [m for m in machines if agent_id is None or m.agent_id == agent_id]
    if not pool:
        return "the team has no agent" if agent_id is None else f"agent {agent_id} is unknown"
    problems = [m._capacity_problem(need) for m in pool]
    if all(problems):
        return "; ".join(p for p in problems if p)
    return None


def wait_reason(need: Need, machines: Sequence[Machine], agent_id: int | None) -> str:
    """Why a queued session of ``need`` (on ``agent_id``, or on any agent) waits now."""
    if agent_id is not None:
        mine = [m for m in machines if m.agent_id == agent_id]
        if not mine:
            return f"agent {agent_id} is unknown"
        found = mine[0].fit(need)
        return found if isinstance(found, str) else f"{mine[0].title} is about to take it"
    if not machines:
        return "the team has no agent: create one (appyard agent create NAME) and run it"
    reasons = []
    for m in sorted(machines, key=lambda m: m.agent_id):
        found = m.fit(need)
        if not isinstance(found, str):
            return f"{m.title} can take it and is about to"
        reasons.append(found if m.online else f"{m.title} is offline")
    head = (
        f"no online agent has {need.gpus_text()} free"
        if need.gpus
        else "no online agent can take it now"
    )
    return f"{head} ({'; '.join(reasons)})"


def _n(n: float, word: str) -> str:
    return f"{n:g} {word}" if n == 1 else f"{n:g} {word}s"
