"""Files on disk addressed by their sha256: release archives, and image files of projects."""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import BinaryIO


def write_atomically(target: Path, data: bytes, prefix: str = ".") -> Path:
    """Write ``data`` to ``target`` through a temporary file in the same folder and a rename:
    a reader never sees half a file, and a crash leaves no partial ``target``."""
    return _atomically(target, lambda f: f.write(data), prefix)


def copy_atomically(target: Path, src: BinaryIO, prefix: str = ".") -> Path:
    """Like ``write_atomically``, from a file read to its end (an upload spooled to disk),
    without holding it in memory."""
    return _atomically(target, lambda f: shutil.copyfileobj(src, f, 1 << 20), prefix)


def _atomically(target: Path, fill: Callable[[BinaryIO], object], prefix: str) -> Path:
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=prefix, suffix=".part")
    try:
        with os.fdopen(fd, "wb") as f:
            fill(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


class ReleaseStore:
    """Release archives by sha256. An archive is written before the release that names it is
    committed (never while a transaction is open); a publish refused after that leaves an
    archive no release names, which costs disk only and is used again if it is published."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def path(self, sha256: str) -> Path:
        return self.root / f"{sha256}.tar.gz"

    def put(self, sha256: str, data: bytes) -> Path:
        """Write atomically: a reader never sees half an archive."""
        target = self.path(sha256)
        if target.exists():
            return target
        return write_atomically(target, data)

    def put_file(self, sha256: str, src: BinaryIO) -> Path:
        """``put`` from a file object (read from where it stands to its end)."""
        target = self.path(sha256)
        if target.exists():
            return target
        return copy_atomically(target, src)


class ImageStore:
    """Image files of projects, addressed by their sha256: ``<root>/ab/<sha256>``.

    Many images (of any team) may share one file. A file is written before the record that
    names it is committed, and removed only when no record names it any longer (``collect``).
    """

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, sha256: str) -> Path:
        return self.root / sha256[:2] / sha256

    def put(self, sha256: str, data: bytes) -> Path:
        """Write atomically (a reader never sees half a file); a file already there is kept."""
        target = self.path(sha256)
        if target.exists():
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        return write_atomically(target, data, prefix=f".{sha256}.")

    def collect(self, shas: Iterable[str], still_used: Callable[[list[str]], set[str]]) -> int:
        """Remove the files of ``shas`` that no record names; returns how many went.

        ``still_used(shas)`` answers from a fresh read of the database. A file is first moved
        aside, then the database is asked again: a record committed meanwhile (an upload of the
        same bytes) gets its file back. An upload committed after that second look finds the
        file missing and writes it again (``put`` after its commit), so no record is left
        without its file; and then collects it (its record may be gone already), so no file is
        left without a record. A second look that fails puts every file back.
        """
        removed = 0
        todo = sorted(set(shas))
        for start in range(0, len(todo), 500):
            chunk = todo[start : start + 500]
            moved: dict[str, Path] = {}
            for sha in set(chunk) - still_used(chunk):
                aside = self.path(sha).with_name(f".{sha}.{secrets.token_hex(6)}.gone")
                try:
                    os.rename(self.path(sha), aside)
                except FileNotFoundError:
                    continue
                moved[sha] = aside
            if not moved:
                continue
            try:
                again = still_used(sorted(moved))
            except BaseException:  # no answer: keep every file (a record may name it)
                for sha, aside in moved.items():
                    os.replace(aside, self.path(sha))
                raise
            for sha, aside in moved.items():
                if sha in again:
                    os.replace(aside, self.path(sha))
                else:
                    aside.unlink(missing_ok=True)
                    removed += 1
        return removed
