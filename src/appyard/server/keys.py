"""Every notifier key, built here and nowhere else: one function per kind of event.

A service records keys on its database session (``notifier.emit``); a long-poll or a stream
follows keys (``routes/follow.py``). Both sides build them with these functions, so a waiter
cannot listen on a key no write sends: a misspelt key would let it sleep until its timeout,
and no test would fail fast. ``Key`` is a type of its own, and ``emit`` and ``subscribe`` take
nothing else, so mypy refuses a key written by hand; ``tests/server/test_keys.py`` checks that
every kind a service emits is one a route follows, and the other way round.
"""

from __future__ import annotations

from typing import NewType

from appyard.domain.status import Status

Key = NewType("Key", str)

#: the prefix of the keys that wake ONE waiter at a time, passed on in a wave (``notifier``)
QUEUE = "queue:"
#: the pipeline engine's key (``pipelines_due``), bare or with a run after a colon
PIPELINES_DUE = "pipelines-due"
_PIPELINES_DUE_RUN = PIPELINES_DUE + ":"


def task(task_id: int) -> Key:
    """The task changed (status, outputs, readiness): its watch and its log stream look."""
    return Key(f"task:{task_id}")


def task_status(task_id: int, status: Status) -> Key:
    """The task reached ``status``: a ``wait`` is woken only at the statuses it answers at."""
    return Key(f"task:{task_id}:{status.value}")


def task_ready(task_id: int) -> Key:
    """The app of the task said it is ready for calls: a ``wait`` until ``ready`` is woken."""
    return Key(f"task:{task_id}:ready")


def team(team_id: int) -> Key:
    """A task or an agent of the team changed: the team's live feed looks."""
    return Key(f"team:{team_id}")


def agent(agent_id: int) -> Key:
    """Work or a stop for this agent, or a slot freed on it: its held poll looks."""
    return Key(f"agent:{agent_id}")


def queue(team_id: int) -> Key:
    """A task any agent of the team may take: ONE held poll of the team looks, and hands the
    wake on while work is left (with 100 agents, one start must not make 100 looks)."""
    return Key(f"{QUEUE}{team_id}")


def log(task_id: int) -> Key:
    """Log lines were appended to the task: its log streams read them."""
    return Key(f"log:{task_id}")


def progress(task_id: int) -> Key:
    """The app reported progress: its watch sends it (a ``wait`` sleeps on)."""
    return Key(f"progress:{task_id}")


def pipeline_run(run_id: int) -> Key:
    """The pipeline run changed (its status, a step, an attempt): its wait and watch look."""
    return Key(f"pipeline-run:{run_id}")


def pipelines_due(run_id: int | None = None) -> Key:
    """For the pipeline engine of every replica. With a run: a task of that run ended (its
    outbox row is committed), and the engine advances that run at once (one replica gets its
    lock). Bare: a run's timer moved earlier; the engine looks at every run and its timers.
    The engine follows the bare key; a run's key wakes it too (``also_wakes``)."""
    return Key(PIPELINES_DUE if run_id is None else f"{PIPELINES_DUE}:{run_id}")


def due_run(key: str) -> int | None:
    """The run a ``pipelines_due`` key names; None for the bare key (or another kind)."""
    head, sep, tail = key.partition(":")
    return int(tail) if sep and head == PIPELINES_DUE and tail.isdigit() else None


def also_wakes(key: str) -> Key | None:
    """The key whose waiters ``key`` wakes besides its own: a run's ``pipelines_due`` wakes
    the engine, which follows the bare one and reads the run from the key it is handed."""
    return Key(PIPELINES_DUE) if key.startswith(_PIPELINES_DUE_RUN) else None


def credential(token_hash: str) -> Key:
    """The token of this hash was revoked, or its user lost access (disabled, removed from a
    team): the streams and long-polls it holds look again now, and end refused.

    Built from the token's hash, which a follow knows from the request before its first look
    (its id only after it): a revocation committed while that look runs still wakes it.
    """
    return Key(f"credential:{token_hash}")
