"""Release archives (gzipped tars) read under caps, by the server at publish and by agents.

A gzip bomb is small on disk and huge unpacked: a 17 MB upload can hold 17 GiB of zeros. So an
archive is never opened with ``tarfile``'s seekable reader (which decompresses everything to
find the members); it is read once, as a stream, through a gunzip that counts what it has
produced and refuses as soon as a cap is passed:

- ``unpacked_bytes``: the members' declared sizes added up, and the bytes the stream produced;
- ``members``: how many entries the tar has;
- ``ratio``: unpacked bytes per compressed byte read, checked once ``ratio_floor`` bytes came
  out (a small app with a few text files compresses well and is never refused for it).

A refusal is an :class:`ArchiveRefused` naming the cap; the server answers it with a 422, the
agent fails the task with it. Both read the same caps from the same environment variables
(``Caps.from_env``; docs/security.md lists them).
"""

from __future__ import annotations

import gzip
import os
import tarfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import BinaryIO

MiB = 1024 * 1024
#: what all of an app's files may take unpacked
MAX_UNPACKED_BYTES = 1024 * MiB
#: entries (files and folders) of one archive
MAX_MEMBERS = 10_000
#: unpacked bytes per compressed byte, once ``RATIO_FLOOR_BYTES`` came out
MAX_RATIO = 100
RATIO_FLOOR_BYTES = 8 * MiB
#: a tar's own bytes beyond its files' (headers, padding, the end blocks), per member and once
_TAR_BYTES_PER_MEMBER = 3 * 512
_TAR_BYTES_ONCE = 64 * 1024
#: a long-name or pax header entry: tarfile reads it whole into memory, so it is held small
MAX_HEADER_BYTES = 1 * MiB
_HEADER_TYPES = frozenset(
    {
        tarfile.GNUTYPE_LONGNAME,
        tarfile.GNUTYPE_LONGLINK,
        tarfile.XHDTYPE,
        tarfile.XGLTYPE,
        tarfile.SOLARIS_XHDTYPE,
    }
)


@dataclass(frozen=True)
class Caps:
    """The limits one reading of an archive is held to."""

    unpacked_bytes: int = MAX_UNPACKED_BYTES
    members: int = MAX_MEMBERS
    ratio: int = MAX_RATIO
    ratio_floor: int = RATIO_FLOOR_BYTES

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Caps:
        """The caps ``APPYARD_MAX_RELEASE_UNPACKED_BYTES``, ``APPYARD_MAX_RELEASE_MEMBERS`` and
        ``APPYARD_MAX_RELEASE_RATIO`` set (the defaults where unset)."""
        env = os.environ if env is None else env
        return cls(
            unpacked_bytes=_positive(env, "APPYARD_MAX_RELEASE_UNPACKED_BYTES", MAX_UNPACKED_BYTES),
            members=_positive(env, "APPYARD_MAX_RELEASE_MEMBERS", MAX_MEMBERS),
            ratio=_positive(env, "APPYARD_MAX_RELEASE_RATIO", MAX_RATIO),
        )


def _positive(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise ValueError(f"{name}={raw!r}: give a whole number of at least 1 (default {default})")
    return value


DEFAULT_CAPS = Caps()


class ArchiveRefused(ValueError):
    """The archive passes a cap or holds an entry that leaves the app folder."""


class _Counted:
    """The compressed side: how many bytes the gunzip has read so far."""

    def __init__(self, raw: BinaryIO) -> None:
        self._raw = raw
        self.count = 0

    def read(self, size: int = -1) -> bytes:
        data = self._raw.read(size)
        self.count += len(data)
        return data


class _CappedGunzip:
    """A gunzip stream that stops with :class:`ArchiveRefused` as soon as it has produced more
    than the caps allow: a bomb costs at most the caps' worth of work, never its full size."""

    def __init__(self, raw: BinaryIO, caps: Caps) -> None:
        self._compressed = _Counted(raw)
        self._gz = gzip.GzipFile(fileobj=self._compressed, mode="rb")  # type: ignore[call-overload]
        self._caps = caps
        self._limit = caps.unpacked_bytes + caps.members * _TAR_BYTES_PER_MEMBER + _TAR_BYTES_ONCE
        self.unpacked = 0

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            size = 1 << 20  # never "all of it": the caps are checked per read
        data = self._gz.read(size)
        self.unpacked += len(data)
        if self.unpacked > self._limit:
            raise ArchiveRefused(
                f"archive unpacks to more than {_size(self._caps.unpacked_bytes)} "
                f"(the cap on an app's unpacked files)"
            )
        compressed = max(self._compressed.count, 1)
        if self.unpacked > self._caps.ratio_floor and self.unpacked > self._caps.ratio * compressed:
            raise ArchiveRefused(
                f"archive unpacks to more than {self._caps.ratio} times its compressed size "
                f"({_size(self.unpacked)} from {_size(compressed)} so far): it looks like a "
                "compression bomb"
            )
        return data


class _CheckedInfo(tarfile.TarInfo):
    """A tar entry whose extended header (a long name, pax records) is refused when large,
    before ``tarfile`` reads it into memory."""

    def _proc_member(self, tar: tarfile.TarFile) -> tarfile.TarInfo:
        if self.type in _HEADER_TYPES and self.size > MAX_HEADER_BYTES:
            raise ArchiveRefused(
                f"archive has an extended header of {_size(self.size)}; "
                f"at most {_size(MAX_HEADER_BYTES)} is allowed"
            )
        return super()._proc_member(tar)  # type: ignore[misc]


def _size(n: int) -> str:
    return f"{n / MiB:.0f} MiB" if n >= MiB else f"{n} bytes"


def escapes(name: str) -> bool:
    """Whether a member's path leaves the app folder (absolute, or ``..`` anywhere)."""
    path = PurePosixPath(name)
    return path.is_absolute() or ".." in path.parts


def members(
    fileobj: BinaryIO, caps: Caps = DEFAULT_CAPS
) -> Iterator[tuple[tarfile.TarFile, tarfile.TarInfo]]:
    """Each entry of a gzipped tar, in order, with the tar to read or extract it from.

    The archive is read once, front to back (``fileobj`` needs only ``read``); an entry's data
    can be read (``tar.extractfile``) or written (``tar.extract``) only while it is the one
    yielded. Raises :class:`ArchiveRefused` past a cap or on a path leaving the folder, and
    ``tarfile.TarError`` / ``OSError`` / ``EOFError`` on an archive that is not a gzipped tar.
    """
    stream = _CappedGunzip(fileobj, caps)
    count = declared = 0
    with tarfile.open(fileobj=stream, mode="r|", tarinfo=_CheckedInfo) as tar:  # type: ignore[call-overload]
        for member in tar:
            count += 1
            if count > caps.members:
                raise ArchiveRefused(
                    f"archive has more than {caps.members} entries (the cap on an app's files)"
                )
            declared += max(member.size, 0)
            if declared > caps.unpacked_bytes:
                raise ArchiveRefused(
                    f"archive unpacks to more than {_size(caps.unpacked_bytes)} "
                    f"(the cap on an app's unpacked files; {member.name!r} alone is "
                    f"{_size(member.size)})"
                )
            if escapes(member.name):
                raise ArchiveRefused(f"archive member {member.name!r} escapes the app folder")
            yield tar, member


__all__ = [
    "DEFAULT_CAPS",
    "MAX_MEMBERS",
    "MAX_RATIO",
    "MAX_UNPACKED_BYTES",
    "RATIO_FLOOR_BYTES",
    "ArchiveRefused",
    "Caps",
    "escapes",
    "members",
]
