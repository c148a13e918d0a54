"""Task statuses and the one transition table.

Every status write in the server is a conditional UPDATE on the old status; this table is
what decides which (old, new) pairs may be written at all.
"""

from __future__ import annotations

from enum import StrEnum


class Status(StrEnum):
    """Task (session) status; lowercase string values, ``str(Status.FINISHED) == "finished"``."""

    QUEUED = "queued"
    CONSUMED = "consumed"
    STARTED = "started"
    #: the reference's status of a plugin that is up; appyard has no plugins, so no task
    #: enters it: a serving app stays ``started`` and its readiness is the task's ``ready``
    #: flag (docs/decisions.md). Kept so that code naming it still imports and lists.
    DEPLOYED = "deployed"
    ERROR = "error"
    FINISHED = "finished"
    TERMINATING = "terminating"
    STOPPED = "stopped"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL


TERMINAL: frozenset[Status] = frozenset({Status.FINISHED, Status.ERROR, Status.STOPPED})
#: statuses in which the task is held by an agent
ON_AGENT: frozenset[Status] = frozenset({Status.CONSUMED, Status.STARTED, Status.TERMINATING})

TRANSITIONS: dict[Status, frozenset[Status]] = {
    # queued -> error: the task can never run (its release vanished, its deadline passed)
    Status.QUEUED: frozenset({Status.CONSUMED, Status.STOPPED, Status.ERROR}),
    # consumed -> queued: the agent restarted before it started the app; it runs elsewhere
    Status.CONSUMED: frozenset(
        {Status.STARTED, Status.STOPPED, Status.ERROR, Status.QUEUED, Status.FINISHED}
    ),
    # a serving app stays started while it serves; its readiness is not a status
    Status.STARTED: frozenset({Status.FINISHED, Status.ERROR, Status.TERMINATING}),
    Status.DEPLOYED: frozenset(),  # no way in (migration 0009 made every such task started)
    # terminating -> error: the agent was lost while it stopped the app
    Status.TERMINATING: frozenset({Status.STOPPED, Status.ERROR}),
    Status.FINISHED: frozenset(),
    Status.ERROR: frozenset(),
    Status.STOPPED: frozenset(),
}


def can_transition(old: Status, new: Status) -> bool:
    """True when ``old -> new`` is a legal move of the state machine."""
    return new in TRANSITIONS[old]


def status_after_exit(current: Status, exit_code: int | None) -> Status:
    """The status a task ends in once its app process is gone.

    A stop was asked for: ``stopped``, whatever the exit code (the user asked for it).
    Otherwise exit 0 is ``finished`` and anything else (a signal, a crash) is ``error``.
    """
    if current is Status.TERMINATING:
        return Status.STOPPED
    if exit_code == 0:
        return Status.FINISHED
    return Status.ERROR
