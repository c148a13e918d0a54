"""The agent's tunnel: the frames that carry requests into running apps (docs/tunnel.md).

An agent opens one WebSocket to the server (``/api/v1/agents/{agent_id}/tunnel``); the server
never dials the agent's machine. Every WebSocket message is one binary frame::

    kind (1 byte) | stream id (4 bytes, big-endian) | payload

Stream 0 is the tunnel's own (``HELLO``); every other id is one exchange, opened by the server
with ``OPEN``. Bodies go in ``DATA`` frames of at most ``chunk`` bytes, each way, ended by
``END``; a receiver hands back ``CREDIT`` as it consumes them, and a sender keeps at most
``window`` ``DATA`` frames of a stream unacknowledged, so a slow reader holds up only its own
stream. ``RESET`` ends a stream at once, from either side, saying why.

This module is pure (no I/O): the server and the agent build and read frames with it.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

#: a frame's header: kind, stream id
_HEADER = struct.Struct(">BI")
HEADER_BYTES = _HEADER.size
#: the largest body piece one DATA frame carries, and DATA frames unacknowledged per stream
DEFAULT_CHUNK_BYTES = 64 * 1024
DEFAULT_WINDOW = 8
MAX_STREAM_ID = 2**32 - 1
#: a JSON payload of a control frame (OPEN, HEAD, RESET, HELLO) is at most this large
MAX_CONTROL_BYTES = 64 * 1024


class Kind(IntEnum):
    """What a frame is. 7 and up are reserved (a WebSocket message through the tunnel, for
    an app page's own websockets, is the next one)."""

    HELLO = 0  # server -> agent, stream 0: the tunnel's limits (JSON)
    OPEN = 1  # server -> agent: a new stream; payload ``Open`` (JSON)
    DATA = 2  # either way: a piece of a body
    END = 3  # either way: the sender's body is complete
    HEAD = 4  # agent -> server: the app's response status and headers (``Head``, JSON)
    CREDIT = 5  # either way: the receiver consumed this many DATA frames (4 bytes)
    RESET = 6  # either way: the stream is over, with why (``Reset``, JSON)


class FrameError(ValueError):
    """A message that is not a frame of this protocol (the peer is broken: the tunnel ends)."""


@dataclass(frozen=True, slots=True)
class Frame:
    kind: Kind
    stream: int
    payload: bytes = b""

    def json(self) -> dict[str, Any]:
        """The payload of a control frame, parsed."""
        if len(self.payload) > MAX_CONTROL_BYTES:
            raise FrameError(f"{self.kind.name} frame payload larger than {MAX_CONTROL_BYTES}")
        try:
            data = json.loads(self.payload)
        except ValueError as exc:
            raise FrameError(f"{self.kind.name} frame payload is not JSON: {exc}") from None
        if not isinstance(data, dict):
            raise FrameError(f"{self.kind.name} frame payload is not a JSON object")
        return data

    def credit(self) -> int:
        if len(self.payload) != 4:
            raise FrameError("CREDIT frame payload is not 4 bytes")
        return int.from_bytes(self.payload, "big")


def encode(kind: Kind, stream: int, payload: bytes = b"") -> bytes:
    return _HEADER.pack(kind, stream) + payload


def encode_json(kind: Kind, stream: int, data: BaseModel | dict[str, Any]) -> bytes:
    raw = (
        data.model_dump_json().encode()
        if isinstance(data, BaseModel)
        else json.dumps(data, separators=(",", ":")).encode()
    )
    return encode(kind, stream, raw)


def encode_credit(stream: int, n: int) -> bytes:
    return encode(Kind.CREDIT, stream, n.to_bytes(4, "big"))


def decode(message: bytes) -> Frame:
    if len(message) < HEADER_BYTES:
        raise FrameError(f"a frame of {len(message)} bytes is shorter than its header")
    raw_kind, stream = _HEADER.unpack_from(message)
    try:
        kind = Kind(raw_kind)
    except ValueError:
        raise FrameError(f"unknown frame kind {raw_kind}") from None
    return Frame(kind, stream, bytes(message[HEADER_BYTES:]))


class Hello(BaseModel):
    """The server's first frame: the limits both sides keep to."""

    window: int = DEFAULT_WINDOW
    chunk: int = DEFAULT_CHUNK_BYTES


class Open(BaseModel):
    """A request into the app of ``task_id``: an HTTP request to its ``APP_PORT``."""

    model_config = ConfigDict(extra="ignore")

    task_id: int
    method: str = "POST"
    path: str = "/"
    headers: list[tuple[str, str]] = Field(default_factory=list)
    #: seconds the app has to answer (head and body), on the agent's side too
    timeout: float = 60.0
    #: ``http``; ``websocket`` is reserved for an app page's websockets
    kind: Literal["http"] = "http"


class Head(BaseModel):
    status: int
    headers: list[tuple[str, str]] = Field(default_factory=list)


ResetCode = Literal[
    "not_here",  # the agent does not run this task (or its app has ended)
    "app_unreachable",  # nothing answers on the app's port
    "app_timeout",  # the app did not answer in time
    "app_broken",  # the app closed the connection or answered something that is not HTTP
    "too_many",  # the agent has as many streams open as it takes
    "cancelled",  # the other side gave up (the client went away, a timeout)
    "protocol",  # a frame broke the protocol (a window overrun)
]


class Reset(BaseModel):
    code: ResetCode
    message: str = ""


# -- the HTTP API of a request into a session -------------------------------------------------


class SessionRequest(BaseModel):
    """``POST /tasks/{task_id}/request``: what the reference SDK's ``send_request`` sends.

    ``command``, ``state`` and ``context`` reach the app as they are (``{"command", "state",
    "context"}``); ``timeout`` bounds its answer; ``skip_response`` answers at once, once the
    request is on its way to the app (fire and forget).
    """

    model_config = ConfigDict(extra="forbid")

    command: str = Field(min_length=1, max_length=200)
    state: dict[str, Any] = Field(default_factory=dict)
    context: dict[str, Any] = Field(default_factory=dict)
    timeout: float = Field(default=60.0, gt=0, le=3600)
    skip_response: bool = False


class RequestAccepted(BaseModel):
    """The answer to a request sent with ``skip_response``: it is on its way to the app."""

    task_id: int
    command: str
    skipped_response: bool = True
