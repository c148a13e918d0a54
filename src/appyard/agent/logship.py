"""Shipping a task's ``log.jsonl`` to the server, from the last acknowledged byte offset.

Each batch carries ``offset`` (where it starts in the file) and ``end_offset`` (where it
ends); the server keeps the highest ``end_offset`` it has and ignores a batch at or below it,
so a batch retried after a timeout, or re-sent by a new agent after a crash, is stored once.
The offset is written to ``state.json`` only after the server acknowledged the batch: after
a crash the agent re-sends at most one batch, never skips one.

The tail is read with ``pread`` on each call; the caller calls ``ship()`` every ~50 ms while
the app runs (and the moment its pidfd says it exited, with ``final=True``).

The server stores a task's log up to its cap (the manifest's ``log_limit``: lines, and bytes of
this file). The shipper stops reading at the cap; the rest stays in the file, and once the app
has ended one last line (``marker``) says how much was left out and where the whole log is. A
server that holds the log to a lower cap says so (413 ``log_full`` with its cap): the shipper
takes that cap and ends the same way.
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
from appyard.errors import ApiError, ConflictError
from appyard.schemas.agents import LogBatch, LogRecord
from appyard.schemas.manifest import DEFAULT_LOG_BYTES, DEFAULT_LOG_LINES

log = logging.getLogger("appyard.agent")

MAX_BATCH_LINES = 2000  # a burst of output ships in few requests (the server takes 5000)
MAX_BATCH_BYTES = 1 << 20
MAX_TEXT = 65536
_LEVELS = frozenset({"debug", "info", "warning", "error"})
#: the marker's text is at most this long (the server takes one line of up to 2048 past the cap)
MAX_MARKER = 2000
_COUNT_CHUNK = 1 << 22


def to_record(raw: bytes) -> LogRecord:
    """One line of log.jsonl as a LogRecord; a line that is not ours is kept as plain text."""
    try:
        data: Any = json.loads(raw)
        level = data.get("level", "info")
        text = data["text"]
        if not isinstance(text, str):  # (a line's text never holds more than its bytes)
            raise TypeError("text is not a string")
        return LogRecord(
            t=data["t"],
            level=level if level in _LEVELS else "info",
            text=text[:MAX_TEXT],
        )
    except (ValueError, KeyError, TypeError, AttributeError, ValidationError):
        text = raw.decode("utf-8", "replace")[:MAX_TEXT]
        return LogRecord(t=datetime.now(UTC), level="info", text=text)


def read_batch(
    fd: int,
    offset: int,
    final: bool,
    max_lines: int = MAX_BATCH_LINES,
    max_end: int | None = None,
) -> tuple[int, list[LogRecord]] | None:
    """Complete lines from ``offset`` (and, when ``final``, a last one without ``\\n``), none
    that ends past byte ``max_end`` of the file.

    Returns (end_offset, records), or None when there is nothing new.
    """
    if max_lines <= 0:
        return None
    data = os.pread(fd, MAX_BATCH_BYTES, offset)
    if not data:
        return None
    room = len(data) if max_end is None else max_end - offset
    end = 0
    records: list[LogRecord] = []
    while len(records) < max_lines:
        nl = data.find(b"\n", end)
        if nl < 0:
            if len(data) > room:
                break
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
        if nl + 1 > room:
            break
        line = data[end:nl]
        end = nl + 1
        if line.strip():
            records.append(to_record(line))
    if end == 0:
        return None
    return offset + end, records


def count_lines(fd: int, start: int, end: int) -> int:
    """Lines in bytes ``start``..``end`` of the file (a last one without ``\\n`` counts)."""
    n = 0
    last = b"\n"
    pos = start
    while pos < end:
        chunk = os.pread(fd, min(_COUNT_CHUNK, end - pos), pos)
        if not chunk:
            break
        n += chunk.count(b"\n")
        last = chunk[-1:]
        pos += len(chunk)
    return n + (last != b"\n")


class LogShipper:
    """Ships one task's log file up to its cap; ``on_ack(offset, lines)`` persists what the
    server has (the byte offset, and how many lines it stores)."""

    def __init__(
        self,
        client: AgentClient,
        task_id: int,
        path: Path,
        offset: int,
        on_ack: Callable[[int, int], None],
        *,
        lines: int = 0,
        cap: tuple[int, int] = (DEFAULT_LOG_LINES, DEFAULT_LOG_BYTES),
        where: str = "",
        max_lines: int = MAX_BATCH_LINES,
    ) -> None:
        self.client = client
        self.task_id = task_id
        self.path = path
        self.offset = offset
        self.lines = lines
        self.on_ack = on_ack
        #: (lines, bytes of the file) the server stores at most
        self.cap = cap
        #: the agent that keeps the whole log, as the marker names it
        self.where = where
        self.max_lines = max_lines
        self._fd: int | None = None
        #: True when the last ``ship()`` stopped at ``max_batches`` with more to send, or
        #: ``end_batch()`` left lines (or the marker) for after the report
        self.behind = False

    def _open(self) -> int | None:
        if self._fd is None:
            try:
                self._fd = os.open(self.path, os.O_RDONLY)
            except FileNotFoundError:
                return None
        return self._fd

    def _next(self, fd: int, final: bool) -> tuple[int, list[LogRecord]] | None:
        """The next batch within the cap, or None."""
        room = min(self.max_lines, self.cap[0] - self.lines)
        return read_batch(fd, self.offset, final, room, self.cap[1])

    def ship(self, final: bool = False, max_batches: int | None = None) -> int:
        """Send what is in the file now, batch by batch, up to the cap; returns the lines sent.
        With ``final`` (nothing writes the file any more) the marker follows, if one is due.

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
            got = self._next(fd, final)
            if got is None:
                break
            batches += 1
            end, records = got
            if self._send(fd, end, records):
                sent += len(records)
        if final:
            marker = self.marker()
            if marker is not None:
                self._send(fd, marker.end_offset, marker.lines)
        return sent

    def end_batch(self, max_batches: int) -> LogBatch | None:
        """The app has ended: send up to ``max_batches`` of the rest of the log but the last,
        and return that one to go with the report of the end, in one request (the marker when
        the rest is past the cap). More than that is left for ``ship(final=True)`` after the
        report: a long backlog does not hold the end back. Call ``acked`` with the returned
        batch's ``end_offset`` and line count once the server has it; None: nothing to send.

        Raises what ``ship`` raises.
        """
        fd = self._open()
        if fd is None:
            return None
        self.behind = False
        pending = self._next(fd, True)
        sent = 1
        while pending is not None and sent < max_batches and self._more_after(fd, *pending):
            self._send(fd, pending[0], pending[1])  # (a resync moves the offset: read from it)
            sent += 1
            pending = self._next(fd, True)
        if pending is None:
            return self.marker()
        end, records = pending
        if end >= os.fstat(fd).st_size or self._more_after(fd, end, records):
            # the last lines, or a backlog within the cap that follows the report
            self.behind = end < os.fstat(fd).st_size
            return LogBatch(offset=self.offset, end_offset=end, lines=records)
        self._send(fd, end, records)
        return self.marker()  # only what is past the cap is left

    def _more_after(self, fd: int, end: int, records: list[LogRecord]) -> bool:
        """Lines within the cap after byte ``end`` (once ``records`` are sent)."""
        room = min(self.max_lines, self.cap[0] - self.lines - len(records))
        return read_batch(fd, end, True, room, self.cap[1]) is not None

    def marker(self) -> LogBatch | None:
        """Once the app has ended: the one line saying what the cap left out and where the
        whole log is, spanning the rest of the file; None when nothing was left out."""
        fd = self._open()
        if fd is None:
            return None
        size = os.fstat(fd).st_size
        if self.offset >= size:
            return None
        left = count_lines(fd, self.offset, size)
        text = (
            f"appyard: log limit reached ({self.cap[0]} lines or {self.cap[1]} bytes, "
            f"manifest log_limit): the last {left} lines ({size - self.offset} bytes) are not "
            f"stored; the whole log is kept {self.where or 'on the agent'}"
        )[:MAX_MARKER]
        record = LogRecord(t=datetime.now(UTC), level="warning", text=text)
        return LogBatch(offset=self.offset, end_offset=size, lines=[record])

    def acked(self, end: int, n: int) -> None:
        """The server has the log up to byte ``end``, ``n`` more lines of it."""
        self.offset = end
        self.lines += n
        self.on_ack(end, self.lines)

    def _send(self, fd: int, end: int, records: list[LogRecord]) -> bool:
        """Send one batch (an empty one is only acknowledged here); False when the server's
        log ends elsewhere and the offset moved there, or its cap is lower than this one's
        (read again)."""
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
            except ApiError as e:
                if not self._lower_cap(e):
                    raise
                return False
        self.acked(end, len(records))
        return True

    def _lower_cap(self, e: ApiError) -> bool:
        """A 413 ``log_full``: the server holds this log to a lower cap; take it."""
        if e.status_code != 413 or e.code != "log_full":
            return False
        lines, size = e.details.get("lines"), e.details.get("bytes")
        if not isinstance(lines, int) or not isinstance(size, int):
            return False
        cap = (min(self.cap[0], lines), min(self.cap[1], size))
        if cap == self.cap:
            return False  # refused within the cap it names: nothing more to try
        log.info("task %d: the server stores %d lines / %d bytes of its log", self.task_id, *cap)
        self.cap = cap
        return True

    def _resync(self, fd: int, e: ConflictError) -> bool:
        theirs = e.details.get("end_offset")
        if not isinstance(theirs, int) or theirs < 0 or theirs == self.offset:
            return False
        if theirs > 0 and os.pread(fd, 1, theirs - 1) != b"\n":
            return False
        log.info("task %d: log resumes at byte %d, where the server has it", self.task_id, theirs)
        count = e.details.get("log_count")
        self.offset = theirs
        if isinstance(count, int) and count >= 0:
            self.lines = count
        self.on_ack(theirs, self.lines)
        return True

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
