"""``supervisely._utils`` as scripts use it: the run mode and a few small helpers."""

from __future__ import annotations

import hashlib
import os
import random
import re
import string
from collections.abc import Iterable, Iterator, Sequence
from typing import TypeVar

T = TypeVar("T")

__all__ = [
    "batched",
    "batched_iter",
    "camel_to_snake",
    "generate_free_name",
    "get_bytes_hash",
    "get_string_hash",
    "is_development",
    "is_production",
    "rand_str",
    "sizeof_fmt",
    "snake_to_human",
    "take_with_default",
]


def is_development() -> bool:
    """True outside an app's task: a script run by hand loads its env files.

    ``ENV=production`` / ``ENV=development`` decide when set (as in the reference); otherwise
    code running as an app's task (``TASK_ID`` set by the agent) is production.
    """
    mode = os.environ.get("ENV")
    if mode is not None:
        return mode != "production"
    return not os.environ.get("TASK_ID")


def is_production() -> bool:
    return not is_development()


def take_with_default(v: T | None, default: T) -> T:
    return v if v is not None else default


def batched(seq: Sequence[T], batch_size: int = 50) -> Iterator[Sequence[T]]:
    for start in range(0, len(seq), batch_size):
        yield seq[start : start + batch_size]


def batched_iter(iterable: Iterable[T], batch_size: int = 50) -> Iterator[list[T]]:
    batch: list[T] = []
    for item in iterable:
        batch.append(item)
        if len(batch) == batch_size:
            yield batch
            batch = []
    if batch:
        yield batch


def rand_str(length: int) -> str:
    chars = string.ascii_letters + string.digits
    return "".join(random.choice(chars) for _ in range(length))


def generate_free_name(
    used_names: set[str] | list[str],
    possible_name: str,
    with_ext: bool = False,
    extend_used_names: bool = False,
) -> str:
    """``possible_name``, or ``name_001``, ``name_002``, ... (before the extension when
    ``with_ext``) until it is not among ``used_names``."""
    used = set(used_names)
    stem, ext = os.path.splitext(possible_name) if with_ext else (possible_name, "")
    name, n = possible_name, 1
    while name in used:
        name = f"{stem}_{n:03d}{ext}"
        n += 1
    if extend_used_names and isinstance(used_names, set):
        used_names.add(name)
    elif extend_used_names and isinstance(used_names, list):
        used_names.append(name)
    return name


def camel_to_snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def snake_to_human(snake_str: str) -> str:
    return " ".join(word.capitalize() for word in snake_str.split("_"))


def get_bytes_hash(data: bytes) -> str:
    import base64

    return base64.b64encode(hashlib.sha256(data).digest()).decode("utf-8")


def get_string_hash(data: str) -> str:
    return get_bytes_hash(data.encode("utf-8"))


def sizeof_fmt(num: float, suffix: str = "B") -> str:
    for unit in ("", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei", "Zi"):
        if abs(num) < 1024.0:
            return f"{num:3.1f} {unit}{suffix}"
        num /= 1024.0
    return f"{num:.1f} Yi{suffix}"
