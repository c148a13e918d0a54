"""The rules of ``wait`` shared by the sync and async task APIs (no I/O here)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Literal

from appyard.domain.status import TERMINAL, Status
from appyard.errors import TaskFinishedWithError, WaitingTimeExceeded
from appyard.schemas.tasks import LogLine, TaskInfo

DEFAULT_ATTEMPTS = 999
DEFAULT_DELAY_S = 1.0
MAX_POLL_S = 25.0  # the server holds a wait open at most this long
#: statuses at which ``wait`` returns whatever the target (the reference's rule): every end
#: but ``error`` (which raises unless it is the target); the reference's ``deployed`` too,
#: which no appyard task enters (a serving app stays ``started``; readiness is ``ready``)
RETURN_AT: frozenset[Status] = TERMINAL - {Status.ERROR}
#: defaults of ``wait_until_ready_for_api_calls`` (the reference's): 10 attempts of 10 s
READY_ATTEMPTS = 10
READY_DELAY_S = 10.0
TAIL_LINES = 20


def format_seconds(value: float) -> str:
    """``3`` for 3.0, ``0.5`` for 0.5: how the budget reads in messages and query strings."""
    if float(value).is_integer():
        return str(int(value))
    return f"{value:.3f}".rstrip("0").rstrip(".")


@dataclass
class WaitPlan:
    """What one ``wait`` call waits for and until when."""

    target: Status | None
    attempts: int | None
    delay: float | None
    max_poll: float = MAX_POLL_S
    started: float = field(default_factory=time.monotonic)

    @classmethod
    def make(
        cls,
        target_status: Status | str | None,
        attempts: int | None,
        delay: float | None,
        max_poll: float = MAX_POLL_S,
    ) -> WaitPlan:
        """Defaults: 999 x 1 s with a target; no target and no limits given: no limit at all."""
        target = Status(target_status) if target_status is not None else None
        if target is Status.DEPLOYED:
            raise ValueError(
                "No appyard session becomes 'deployed' (the reference's status for plugins): "
                "a serving app stays 'started' and says separately that it is ready for calls. "
                "Wait for that with api.app.wait_until_ready_for_api_calls(task_id), or for "
                "'started'."
            )
        if target is not None or attempts is not None or delay is not None:
            attempts = attempts if attempts is not None else DEFAULT_ATTEMPTS
            delay = delay if delay is not None else DEFAULT_DELAY_S
        return cls(target, attempts, delay, max_poll)

    @property
    def budget(self) -> float | None:
        if self.attempts is None or self.delay is None:
            return None
        return self.attempts * self.delay

    def remaining(self) -> float | None:
        if self.budget is None:
            return None
        return self.budget - (time.monotonic() - self.started)

    def poll_timeout(self) -> float:
        remaining = self.remaining()
        if remaining is None:
            return self.max_poll
        return max(0.0, min(self.max_poll, remaining))

    @property
    def until(self) -> str:
        """The statuses the server should answer at (terminal ones it answers at anyway)."""
        statuses = set(RETURN_AT)
        if self.target is not None:
            statuses.add(self.target)
        return ",".join(sorted(s.value for s in statuses))

    def outcome(self, task: TaskInfo) -> Literal["done", "error", "wait"]:
        """``done``: return the status; ``error``: raise TaskFinishedWithError; else wait on."""
        status = task.status
        if status is Status.ERROR and self.target is not Status.ERROR:
            return "error"
        if status is self.target or status in RETURN_AT or status is Status.ERROR:
            return "done"
        return "wait"

    def exceeded(self) -> WaitingTimeExceeded:
        assert self.attempts is not None and self.delay is not None
        return WaitingTimeExceeded(
            f"Waiting time exceeded: total waiting time {int(self.attempts * self.delay)} "
            f"seconds, i.e. {self.attempts} attempts for {format_seconds(self.delay)} "
            "seconds each"
        )


def ready_budget(attempts: int | None, attempt_delay_sec: float | None) -> float:
    """Seconds ``wait_until_ready_for_api_calls`` may take in all: attempts x delay (the
    reference's defaults for a ``None``)."""
    attempts = READY_ATTEMPTS if attempts is None else attempts
    delay = READY_DELAY_S if attempt_delay_sec is None else attempt_delay_sec
    return max(0.0, attempts * float(delay))


def ready_for_calls(task: TaskInfo) -> bool:
    """The app said it is ready for calls and runs unstopped (what a request needs)."""
    return task.ready and task.status is Status.STARTED


def never_ready(task: TaskInfo) -> bool:
    """Stopping or ended without being ready for calls: it will not be any more."""
    return task.status is Status.TERMINATING or task.status in TERMINAL


def needs_log_tail(task: TaskInfo) -> bool:
    """The server puts the log tail into ``error``; fetch it only when that is missing."""
    return task.status is Status.ERROR and "\n" not in (task.error or "")


def error_message(task: TaskInfo, tail: list[LogLine]) -> str:
    """``Task finished with status error`` plus the task's error text and last log lines."""
    message = "Task finished with status error"
    error = (task.error or "").strip()
    if error:
        message += f": {error}"
    extra = [line.text for line in tail[-TAIL_LINES:] if line.text not in error]
    if extra:
        message += "\nLast log lines:\n" + "\n".join(extra)
    return message


def finished_with_error(task: TaskInfo, tail: list[LogLine]) -> TaskFinishedWithError:
    return TaskFinishedWithError(error_message(task, tail), task_id=task.id, error=task.error)
