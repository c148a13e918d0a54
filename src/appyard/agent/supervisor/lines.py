"""The app's output bytes as log records: lines, their levels, long lines cut.

Levels: a stdout line is ``info`` and a stderr line ``error``, unless one of the first words of
the line is an upper-case level name (``DEBUG``, ``INFO``, ``WARNING``/``WARN``, ``ERROR``,
``CRITICAL``/``FATAL``), as Python's logging and most servers write them; then that level.
Lines are split on ``\\n`` (a trailing ``\\r`` is dropped); a line longer than 64 KiB is cut and
marked, the rest of it up to the next newline is dropped. Bytes that are not UTF-8 are replaced.
Lines the supervisor writes itself (stop, kill, spawn error) carry ``"src": "supervisor"``.
"""

from __future__ import annotations

from .files import jstr, now_iso

CUT_MARK = " …[line cut]"
MAX_LINE = 65536 - len(CUT_MARK)  # bytes kept of a long line; the text stays <= 64 Ki chars
#: bytes read from an output pipe at once
READ_SIZE = 65536

_LEVELS = {
    "DEBUG": "debug",
    "INFO": "info",
    "WARNING": "warning",
    "WARN": "warning",
    "ERROR": "error",
    "CRITICAL": "error",
    "FATAL": "error",
}


def level_of(text: str, default: str) -> str:
    """The level named by one of the first words of a line, else ``default``."""
    word: list[str] = []
    words = 0
    for ch in text[:48]:
        if ch.isalnum() or ch == "_":
            word.append(ch)
            continue
        if word:
            found = _LEVELS.get("".join(word))
            if found:
                return found
            word.clear()
            words += 1
            if words >= 8:
                return default
    if word:
        return _LEVELS.get("".join(word), default)
    return default


def record(level: str, text: str, src: str | None = None) -> str:
    """One line of ``log.jsonl`` (without its newline)."""
    rec = f'{{"t": "{now_iso()}", "level": "{level}", "text": {jstr(text)}'
    if src:
        rec += f', "src": "{src}"'
    return rec + "}"


def line(raw: bytes, default_level: str, cut: bool = False) -> str:
    """The record of one output line (its bytes without the newline)."""
    if raw.endswith(b"\r"):
        raw = raw[:-1]
    text = raw.decode("utf-8", "replace")
    if cut:
        text += CUT_MARK
    return record(level_of(text, default_level), text)


class Lines:
    """One output pipe cut into records: its unfinished last line, and whether the rest of a
    cut line is being dropped."""

    __slots__ = ("buf", "cutting", "level")

    def __init__(self, level: str) -> None:
        self.level = level
        self.buf = bytearray()
        self.cutting = False

    def feed(self, data: bytes, records: list[str]) -> None:
        """Split a chunk of the pipe into lines; ``data == b""`` (EOF) flushes the last one."""
        buf = self.buf
        buf += data
        while True:
            i = buf.find(b"\n")
            if i < 0:
                if len(buf) > MAX_LINE and not self.cutting:
                    records.append(line(bytes(buf[:MAX_LINE]), self.level, cut=True))
                    self.cutting = True
                if self.cutting:
                    buf.clear()
                if not data and buf:
                    records.append(line(bytes(buf), self.level))
                    buf.clear()
                return
            if self.cutting:
                self.cutting = False
            else:
                records.append(line(bytes(buf[: min(i, MAX_LINE)]), self.level, i > MAX_LINE))
            del buf[: i + 1]
