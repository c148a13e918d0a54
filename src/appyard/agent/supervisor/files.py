"""The task files the supervisor writes, and the JSON in them (``json`` costs ~9 ms of imports)."""

from __future__ import annotations

import os
import time

LOG_NAME = "log.jsonl"
EXIT_NAME = "exit.json"
PIDS_NAME = "pids.json"

_ESC = {i: f"\\u{i:04x}" for i in range(32)}
_ESC.update({ord('"'): '\\"', ord("\\"): "\\\\", ord("\n"): "\\n", ord("\r"): "\\r", 9: "\\t"})


def jstr(s: str) -> str:
    """A JSON string literal."""
    return '"' + s.translate(_ESC) + '"'


def jvalue(v: object) -> str:
    """JSON for the few value types the supervisor writes."""
    if v is None:
        return "null"
    if v is True:
        return "true"
    if v is False:
        return "false"
    if isinstance(v, int | float):
        return repr(v)
    return jstr(str(v))


def jobject(d: dict[str, object]) -> str:
    return "{" + ", ".join(f"{jstr(k)}: {jvalue(v)}" for k, v in d.items()) + "}"


def now_iso() -> str:
    """UTC time with microseconds, the form pydantic parses: 2024-05-01T10:00:00.123456Z."""
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1e6):06d}Z"


def write_atomic(path: str, text: str, sync: bool = False) -> None:
    """tmp + rename: a reader (an agent) sees the old file or the whole new one."""
    tmp = f"{path}.tmp{os.getpid()}"
    data = (text + "\n").encode("utf-8")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o666)
    try:
        while data:
            data = data[os.write(fd, data) :]
        if sync:
            os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
