"""Shipping a task's ``log.jsonl`` to the server, from the last acknowledged byte offset.

Each batch carries ``offset`` (where it starts in the file) and ``end_offset`` (where it
ends); the server keeps the highest ``end_offset`` it has and ignores a batch at or below it,
so a batch retried after a timeout, or re-sent by a new agent after a crash, is stored once.
The offset is written to ``state.json`` only after the server acknowledged the batch: after
a crash the agent re-sends at most one batch, never skips one.

The tail is read with ``pread`` on each call; the caller calls ``ship()`` every ~50 ms while
the app runs (and the moment its pidfd says it exited, with ``final=True``).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from appyard.agent.client import AgentClient
from appyard.errors import ConflictError
from appyard.schemas.agents import LogBatch, LogRecord

log = logging.getLogger("appyard.agent")

MAX_BATCH_LINES = 2000  # a burst of output ships in few requests (the server takes 5000)
MAX_BATCH_BYTES = 1 << 20
MAX_TEXT = 65536
_LEVELS = frozenset({"debug", "info", "warning", "error"})


def to_record(raw: bytes) -> LogRecord:
    """One line of log.jsonl as a LogRecord; a line that is not ours is kept as plain text."""
    try:
        data: Any = json.loads(raw)
        level = data.get("level", "info")
        return LogRecord(
            t=data["t"],
            level=level if level in _LEVELS else "info",
            text=str(data["text"])[:MAX_TEXT],
        )
    except (ValueError, KeyError, TypeError, AttributeError, ValidationError):
        text = raw.decode("utf-8", "replace")[:MAX_TEXT]
        return LogRecord(t=datetime.now(UTC), level="info", text=text)


def read_batch(
    fd: int, offset: int, final: bool, max_lines: int = MAX_BATCH_LINES
) -> tuple[int, list[LogRecord]] | None:
    """Complete lines from ``offset`` (and, when ``final``, a last one without ``\\n``).

    Returns (end_offset, records), or None when there is nothing new.
    """
    data = os.pread(fd, MAX_BATCH_BYTES, offset)
    if not data:
        return None
    end = 0
    records: list[LogRecord] = []
    while len(records) < max_lines:
        nl = data.find(b"\n", end)
        if nl < 0:
            if final and len(data) < MAX_BATCH_BYTES:
                # nothing writes the file any more: a torn last line is still a line
                if data[end:].strip():
                    records.append(to_record(data[end:]))
                end = len(data)
            elif end == 0 and len(data) == MAX_BATCH_BYTES:
                # one line longer than a batch (not written by our supervisor): cut it here
                records.append(to_record(data))
                end = len(data)
            break
        line = data[end:nl]
        end = nl + 1
        if line.strip():
            records.append(to_record(line))
    if end == 0:
        return None
    return offset + end, records


class LogShipper:
    """Ships one task's log file; ``on_ack(offset)`` persists what the server has."""

    def __init__(
        self,
        client: AgentClient,
        task_id: int,
        path: Path,
        offset: int,
        on_ack: Callable[[int], None],
        max_lines: int = MAX_BATCH_LINES,
    ) -> None:
        self.client = client
        self.task_id = task_id
        self.path = path
        self.offset = offset
        self.on_ack = on_ack
        self.max_lines = max_lines
        self._fd: int | None = None
        #: True when the last ``ship()`` stopped at ``max_batches`` with more to send
        self.behind = False

    def _open(self) -> int | None:
        if self._fd is None:
            try:
                self._fd = os.open(self.path, os.O_RDONLY)
            except FileNotFoundError:
                return None
        return self._fd

    def ship(self, final: bool = False, max_batches: int | None = None) -> int:
        """Send what is in the file now, batch by batch; returns the lines sent.

        With ``max_batches`` it returns early (``behind`` tells) so that the caller can look
        at the app between batches of a long backlog.

        Raises what ``AgentClient.logs`` raises: ``ApiError`` when the server refuses the
        batch (a 4xx), ``Abandoned`` when the agent shuts down during an outage.
        """
        fd = self._open()
        if fd is None:
            return 0
        sent = batches = 0
        self.behind = False
        while True:
            if max_batches is not None and batches >= max_batches:
                self.behind = True
                return sent
            got = read_batch(fd, self.offset, final, self.max_lines)
            if got is None:
                return sent
            batches += 1
            end, records = got
            if self._send(fd, end, records):
                sent += len(records)

    def rest_but_last(self) -> LogBatch | None:
        """The app has ended: send the rest of the log but its last batch, and return that
        batch (None: nothing is left) to go with the report of the end, in one request; call
        ``acked`` with its ``end_offset`` once the server has it.

        Raises what ``ship`` raises.
        """
        fd = self._open()
        if fd is None:
            return None
        size = os.fstat(fd).st_size  # nothing writes the file any more
        while True:
            got = read_batch(fd, self.offset, True, self.max_lines)
            if got is None:
                return None
            end, records = got
            if records and end >= size:
                return LogBatch(offset=self.offset, end_offset=end, lines=records)
            self._send(fd, end, records)

    def acked(self, end: int) -> None:
        """The server has the log up to byte ``end``."""
        self.offset = end
        self.on_ack(end)

    def _send(self, fd: int, end: int, records: list[LogRecord]) -> bool:
        """Send one batch (an empty one is only acknowledged here); False when the server's
        log ends elsewhere and the offset moved there (read again from it)."""
        if records:
            batch = LogBatch(offset=self.offset, end_offset=end, lines=records)
            try:
                self.client.logs(self.task_id, batch)
            except ConflictError as e:
                # the server has more (or less) than we thought: an ack we never wrote
                # down before a crash. Continue from where its log ends, if that is a
                # line boundary of our file; otherwise the logs cannot be matched up.
                if not self._resync(fd, e):
                    raise
                return False
        self.acked(end)
        return True

    def _resync(self, fd: int, e: ConflictError) -> bool:
        theirs = e.details.get("end_offset")
        if not isinstance(theirs, int) or theirs < 0 or theirs == self.offset:
            return False
        if theirs > 0 and os.pread(fd, 1, theirs - 1) != b"\n":
            return False
        log.info("task %d: log resumes at byte %d, where the server has it", self.task_id, theirs)
        self.offset = theirs
        self.on_ack(theirs)
        return True

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
