"""The websocket frames of the agents' tunnel (``schemas/tunnel.py``): a message split into
``MESSAGE`` pieces and put together again, and the credit rule that keeps a slow consumer's
stream to a bounded size (docs/tunnel.md)."""

from __future__ import annotations

import pytest

from appyard.schemas.tunnel import (
    Close,
    FrameError,
    Kind,
    MessageTooBig,
    Reassembly,
    close_reason,
    decode,
    encode_close,
    is_close,
    message_frames,
    read_close,
    sendable_close,
)


def _payloads(data: bytes, text: bool, chunk: int) -> list[bytes]:
    frames = [decode(f) for f in message_frames(3, data, text, chunk)]
    assert all(f.kind is Kind.MESSAGE and f.stream == 3 for f in frames)
    return [f.payload for f in frames]


def test_a_message_goes_in_pieces_and_comes_back_whole() -> None:
    data = bytes(range(256)) * 40  # 10240 bytes: 10 pieces of 1024
    pieces = _payloads(data, False, 1024)
    assert len(pieces) == 10 and all(len(p) <= 1025 for p in pieces)
    r = Reassembly(window=4, max_bytes=20_000)
    credits = 0
    for p in pieces[:-1]:  # nothing waits to be sent: each piece is credited as it comes
        message, credit = r.feed(p)
        assert message is None
        credits += credit
    assert credits == 9
    message, credit = r.feed(pieces[-1])
    assert message == (False, data) and credit == 0  # held until the message is sent
    assert r.sent() == 1
    assert r.feed(_payloads(b"", True, 1024)[0]) == ((True, b""), 0)  # an empty text


def test_credit_is_held_while_a_message_waits_to_be_sent() -> None:
    """A slow consumer: while a whole message waits, the next one's pieces are not credited,
    so the sender stops after ``window`` of them."""
    r = Reassembly(window=3, max_bytes=10_000)
    first = _payloads(b"a" * 10, True, 1024)
    assert r.feed(first[0]) == ((True, b"a" * 10), 0)
    second = _payloads(b"b" * 2000, False, 1024)  # 2 pieces: the window is then used up
    assert r.feed(second[0]) == (None, 0)
    assert r.feed(second[1]) == ((False, b"b" * 2000), 0)
    assert r.sent() == 0  # the second still waits
    assert r.sent() == 3  # everything received is credited once both went
    r.feed(first[0])
    r.feed(second[0])
    r.feed(second[1])
    with pytest.raises(FrameError, match="window overrun"):
        r.feed(second[0])  # a fourth piece without credit


def test_a_message_over_the_cap_is_refused_as_it_grows() -> None:
    r = Reassembly(window=100, max_bytes=2048)
    pieces = _payloads(b"x" * 4096, False, 1024)
    r.feed(pieces[0])
    r.feed(pieces[1])
    with pytest.raises(MessageTooBig):
        r.feed(pieces[2])


def test_closes_and_their_codes() -> None:
    frame = decode(encode_close(5, Close(code=4321, reason="bye")))
    assert is_close(frame) and read_close(frame) == Close(code=4321, reason="bye")
    assert not is_close(decode(message_frames(5, b"x", False, 1024)[0]))
    assert [sendable_close(c) for c in (None, 1005, 1006, 1000, 1009, 1015, 4000, 999)] == [
        1000,
        1000,
        1001,
        1000,
        1009,
        1001,
        4000,
        1001,
    ]
    long = close_reason("é" * 100)
    assert len(long.encode()) <= 123 and long.endswith("...")
