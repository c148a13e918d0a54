"""The agent's tunnel: the frames that carry requests into running apps (docs/tunnel.md).

An agent opens one WebSocket to the server (``/api/v1/agents/{agent_id}/tunnel``); the server
never dials the agent's machine. Every WebSocket message is one binary frame::

    kind (1 byte) | stream id (4 bytes, big-endian) | payload

Stream 0 is the tunnel's own (``HELLO``); every other id is one exchange, opened by the server
with ``OPEN``. Bodies go in ``DATA`` frames of at most ``chunk`` bytes, each way, ended by
``END``; a receiver hands back ``CREDIT`` as it consumes them, and a sender keeps at most
``window`` ``DATA`` frames of a stream unacknowledged, so a slow reader holds up only its own
stream. ``RESET`` ends a stream at once, from either side, saying why.

A stream opened with ``Open.kind == "websocket"`` is an app page's own WebSocket: after the
agent's ``HEAD`` (101), each WebSocket message goes in ``MESSAGE`` frames (pieces of at most
``chunk`` bytes under the same window and ``CREDIT``), and ``CLOSE`` passes a close code and
reason on; ``Reassembly`` is the receiving side's rule, shared by the server and the agent.

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
#: a REQUEST's or ANSWER's payload starts with the length of its JSON head
_WHOLE = struct.Struct(">I")
#: the header a peer sends to say which optional frames it reads
FEATURES_HEADER = "x-appyard-tunnel"
#: the largest body piece one DATA frame carries, and DATA frames unacknowledged per stream
DEFAULT_CHUNK_BYTES = 64 * 1024
DEFAULT_WINDOW = 8
MAX_STREAM_ID = 2**32 - 1
#: a JSON payload of a control frame (OPEN, HEAD, RESET, HELLO, CLOSE) is at most this large
MAX_CONTROL_BYTES = 64 * 1024
#: the largest WebSocket message of an app page's websocket, either way (server setting
#: ``APPYARD_MAX_WS_MESSAGE_BYTES``, told to the agent in ``HELLO``)
DEFAULT_WS_MESSAGE_BYTES = 1024 * 1024
#: the flags byte that starts a MESSAGE frame's payload: a text message (else binary); more
#: pieces of the same message follow; a close (``Close`` JSON after the flags, takes no credit)
MESSAGE_TEXT = 0x01
MESSAGE_MORE = 0x02
MESSAGE_CLOSE = 0x04


class Kind(IntEnum):
    """What a frame is. ``MESSAGE`` carries an app page's own websockets: a flags byte, then a
    piece of a WebSocket message, or (``MESSAGE_CLOSE``) the sender's close as ``Close`` JSON.

    ``REQUEST`` and ``ANSWER`` are a whole exchange's half in one message (the usual small
    JSON request and reply): one WebSocket message each way instead of OPEN, DATA, END, the
    CREDIT for it, then HEAD, DATA, END and its CREDIT. A peer uses them only when the other
    said it reads them (the agent's ``X-Appyard-Tunnel`` header, the server's ``HELLO``)."""

    HELLO = 0  # server -> agent, stream 0: the tunnel's limits (JSON)
    OPEN = 1  # server -> agent: a new stream; payload ``Open`` (JSON)
    DATA = 2  # either way: a piece of a body
    END = 3  # either way: the sender's body is complete
    HEAD = 4  # agent -> server: the app's response status and headers (``Head``, JSON)
    CREDIT = 5  # either way: the receiver consumed this many DATA frames (4 bytes)
    RESET = 6  # either way: the stream is over, with why (``Reset``, JSON)
    MESSAGE = 7  # either way, websocket streams: a piece of a message, or a close (flags first)
    REQUEST = 8  # server -> agent: OPEN + its whole body + END (``encode_whole``)
    ANSWER = 9  # agent -> server: HEAD + its whole body + END (``encode_whole``)


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

    def whole(self) -> tuple[dict[str, Any], bytes]:
        """A ``REQUEST`` or ``ANSWER``: its head (``Open`` or ``Head``, JSON) and whole body."""
        if len(self.payload) < _WHOLE.size:
            raise FrameError(f"{self.kind.name} frame shorter than its head's length")
        (n,) = _WHOLE.unpack_from(self.payload)
        if n > MAX_CONTROL_BYTES or _WHOLE.size + n > len(self.payload):
            raise FrameError(f"{self.kind.name} frame's head length {n} is out of bounds")
        head = Frame(self.kind, self.stream, self.payload[_WHOLE.size : _WHOLE.size + n]).json()
        return head, self.payload[_WHOLE.size + n :]

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


def encode_whole(kind: Kind, stream: int, head: BaseModel, body: bytes) -> bytes:
    """A ``REQUEST`` (``head`` an ``Open``) or ``ANSWER`` (a ``Head``) with its whole body."""
    raw = head.model_dump_json().encode()
    return _HEADER.pack(kind, stream) + _WHOLE.pack(len(raw)) + raw + body


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
    #: the largest WebSocket message either way (an older agent ignores it)
    ws_message: int = DEFAULT_WS_MESSAGE_BYTES
    #: the server reads ``ANSWER`` frames (an older server's HELLO has no such field)
    whole: bool = False


class Open(BaseModel):
    """A request into the app of ``task_id``: an HTTP request to its ``APP_PORT``."""

    model_config = ConfigDict(extra="ignore")

    task_id: int
    method: str = "POST"
    path: str = "/"
    headers: list[tuple[str, str]] = Field(default_factory=list)
    #: seconds the app has to answer (head and body), on the agent's side too
    timeout: float = 60.0
    #: ``http``: one HTTP exchange; ``websocket``: the agent opens a WebSocket to the app at
    #: ``path`` (``timeout`` bounds its handshake), answers ``HEAD`` 101 with the subprotocol
    #: the app chose (``sec-websocket-protocol``), then messages go in ``MESSAGE`` frames
    kind: Literal["http", "websocket"] = "http"


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
    "app_refused",  # websocket: the app answered the handshake with an HTTP status, not 101
]


class Reset(BaseModel):
    code: ResetCode
    message: str = ""


# -- websocket streams ---------------------------------------------------------------------------


class Close(BaseModel):
    """A close (a ``MESSAGE`` frame flagged ``MESSAGE_CLOSE``): the close code and reason of one
    side of a websocket stream, passed on to the other (``None`` or 1005: closed without a code;
    1006: dropped without a close)."""

    code: int | None = None
    reason: str = ""


def encode_close(stream: int, close: Close) -> bytes:
    return encode(Kind.MESSAGE, stream, bytes((MESSAGE_CLOSE,)) + close.model_dump_json().encode())


def is_close(frame: Frame) -> bool:
    """A ``MESSAGE`` frame that carries a close (it takes no credit)."""
    return bool(frame.payload) and bool(frame.payload[0] & MESSAGE_CLOSE)


def read_close(frame: Frame) -> Close:
    try:
        return Close.model_validate(Frame(frame.kind, frame.stream, frame.payload[1:]).json())
    except ValueError as exc:
        raise FrameError(f"bad close on stream {frame.stream}: {exc}") from None


#: close codes a close frame may carry (RFC 6455 7.4): the others (1005, 1006, 1015) only
#: describe what happened, and a proxy turns them into one it may send
_SENDABLE = frozenset({1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014})


def sendable_close(code: int | None) -> int:
    """``code`` if a close frame may carry it, else 1000 (no code given) or 1001 (dropped)."""
    if code is None or code == 1005:
        return 1000
    if code in _SENDABLE or 3000 <= code <= 4999:
        return code
    return 1001


def close_reason(text: str) -> str:
    """``text`` cut to what a close frame carries (123 bytes of UTF-8)."""
    raw = text.encode()
    if len(raw) <= 123:
        return text
    return raw[:120].decode(errors="ignore") + "..."


def message_frames(stream: int, data: bytes, text: bool, chunk: int) -> list[bytes]:
    """One WebSocket message as ``MESSAGE`` frames of at most ``chunk`` bytes of data each (an
    empty message is one frame); every one of them takes one credit."""
    kind = MESSAGE_TEXT if text else 0
    if len(data) <= chunk:
        return [encode(Kind.MESSAGE, stream, bytes((kind,)) + data)]
    view = memoryview(data)
    frames = []
    for start in range(0, len(data), chunk):
        more = MESSAGE_MORE if start + chunk < len(data) else 0
        frames.append(
            encode(Kind.MESSAGE, stream, bytes((kind | more,)) + view[start : start + chunk])
        )
    return frames


class MessageTooBig(Exception):
    """A WebSocket message through the tunnel grew past its cap."""


class Reassembly:
    """The receiving side of a websocket stream's ``MESSAGE`` frames: pieces become whole
    messages, and credit goes back so that a slow consumer stalls only its own stream.

    A message may be longer than ``window`` pieces, so the pieces of the message being
    assembled are credited as they come, while no whole message waits for the consumer; once
    one waits (handed on, not sent yet), credit is held until it is sent (``sent``). So a
    stream holds at most the message being sent, plus ``window`` pieces, plus one message
    being assembled up to ``max_bytes``. Not thread-safe: each side holds its own lock.
    """

    def __init__(self, window: int, max_bytes: int) -> None:
        self.window = window
        self.max_bytes = max_bytes
        self._parts: list[bytes] = []
        self._size = 0
        self._text: bool | None = None
        #: pieces received and not credited yet
        self.unacked = 0
        #: whole messages handed to the consumer and not sent on yet
        self.waiting = 0

    def feed(self, payload: bytes) -> tuple[tuple[bool, bytes] | None, int]:
        """One ``MESSAGE`` payload: the whole message it ends (text?, data), if any, and the
        credit to send back now. Raises ``FrameError`` (window overrun, no flags byte) or
        ``MessageTooBig``."""
        if not payload:
            raise FrameError("MESSAGE frame without its flags byte")
        self.unacked += 1
        if self.unacked > self.window:
            raise FrameError("window overrun")
        flags = payload[0]
        if self._text is None:
            self._text = bool(flags & MESSAGE_TEXT)
        self._size += len(payload) - 1
        if self._size > self.max_bytes:
            raise MessageTooBig(f"a message of more than {self.max_bytes} bytes")
        self._parts.append(payload[1:])
        if flags & MESSAGE_MORE:
            return None, self._release()
        message = (self._text, b"".join(self._parts))
        self._parts, self._size, self._text = [], 0, None
        self.waiting += 1
        return message, 0

    def sent(self) -> int:
        """A message handed on was sent: the credit to send back now."""
        self.waiting = max(0, self.waiting - 1)
        return self._release()

    def _release(self) -> int:
        if self.waiting:
            return 0
        n, self.unacked = self.unacked, 0
        return n


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
