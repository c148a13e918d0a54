"""``supervisely.sly_logger``: one ``logging.Logger`` named ``sly``, as scripts use it.

The reference's style is tolerated: ``logger.info("done", extra={"count": 3, "name": "x"})``
works even when an extra key is one ``logging`` reserves (``name``, ``message``, ...), and the
extras are printed after the message. Lines go to stdout (what the agent ships into the task's
log); the level comes from ``LOG_LEVEL`` (default ``info``).
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Mapping
from enum import Enum
from types import TracebackType
from typing import Any

__all__ = ["EventType", "ServiceType", "add_logger_handler", "get_task_logger", "logger"]

#: attributes every LogRecord has: an extra under one of these names is renamed, not refused
_RESERVED = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}
_ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None] | tuple[None, None, None]


class ServiceType(Enum):
    AGENT = 1
    TASK = 2
    EXPORT = 3


class EventType(Enum):
    LOGJ = 1
    LOGS = 2
    TASK_STARTED = 3
    TASK_FINISHED = 4
    TASK_STOPPED = 5
    TASK_CRASHED = 6
    STEP_COMPLETE = 7
    PROGRESS = 8
    CHECKPOINT = 9
    METRICS = 10
    TASK_REMOVED = 11
    MODEL_APPLIED = 12
    PLUGIN_READY = 13
    TASK_DEPLOYED = 14
    AGENT_READY_FOR_TASKS = 15
    MISSED_TASK_FOUND = 16
    REPORT_CREATED = 17
    IMPORT_APPLIED = 18
    PROJECT_CREATED = 19
    APP_FINISHED = 20


class _Logger(logging.Logger):
    """Keeps the extras of each record under ``record.extras`` (renaming none away)."""

    def makeRecord(
        self,
        name: str,
        level: int,
        fn: str,
        lno: int,
        msg: object,
        args: Any,
        exc_info: _ExcInfo | None,
        func: str | None = None,
        extra: Mapping[str, object] | None = None,
        sinfo: str | None = None,
    ) -> logging.LogRecord:
        record = super().makeRecord(name, level, fn, lno, msg, args, exc_info, func, None, sinfo)
        extras = dict(extra or {})
        for key, value in extras.items():
            if key not in _RESERVED:
                setattr(record, key, value)
        record.extras = extras
        return record


class _Formatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        extras = getattr(record, "extras", None)
        if extras:
            line += " " + json.dumps(extras, default=_plain, ensure_ascii=False)
        return line


def _plain(value: Any) -> Any:
    if isinstance(value, Enum):
        return value.name
    return str(value)


def _level() -> int:
    name = os.environ.get("LOG_LEVEL", "info").upper()
    return logging.getLevelName(name) if isinstance(logging.getLevelName(name), int) else 20


def _make(name: str) -> logging.Logger:
    previous = logging.getLoggerClass()
    logging.setLoggerClass(_Logger)
    try:
        made = logging.getLogger(name)
    finally:
        logging.setLoggerClass(previous)
    if not made.handlers:
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(_Formatter("%(asctime)s %(levelname)s %(message)s"))
        made.addHandler(handler)
        made.setLevel(_level())
        made.propagate = False
    return made


logger = _make("sly")


def add_logger_handler(the_logger: logging.Logger, log_handler: logging.Handler) -> None:
    log_handler.setFormatter(_Formatter("%(asctime)s %(levelname)s %(message)s"))
    the_logger.addHandler(log_handler)


def get_task_logger(task_id: int, loglevel: str | None = None) -> logging.Logger:
    task_logger = _make(f"task_{task_id}")
    if loglevel is not None:
        task_logger.setLevel(loglevel.upper())
    return task_logger
