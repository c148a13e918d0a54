"""A minimal server-sent events parser (the subset the appyard server speaks)."""

from __future__ import annotations

from typing import NamedTuple


class SSEvent(NamedTuple):
    event: str
    data: str
    id: str | None


class SSEParser:
    """Feed lines of a ``text/event-stream``; get back each event once its blank line arrives."""

    def __init__(self) -> None:
        self._event = ""
        self._data: list[str] = []
        self._id: str | None = None

    def feed(self, line: str) -> SSEvent | None:
        line = line.rstrip("\r\n")
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None  # a comment: keep-alive
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)
        elif name == "id":
            self._id = value
        return None

    def _dispatch(self) -> SSEvent | None:
        if not self._data and not self._event:
            return None
        event = SSEvent(self._event or "message", "\n".join(self._data), self._id)
        self._event, self._data = "", []
        return event
