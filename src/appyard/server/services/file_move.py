"""Moving a team file to another path of its team: all of it, or nothing.

The file is linked at its new path (``os.link`` fails if anything is there: a racing upload
or move to that path is never overwritten) and then unlinked at its old one, so it is never
missing from both; of two racing moves (or a move and a removal) of one file, the one that
unlinks the old path first wins, and the other takes its link back (a 404 for the file, as if
it came after). Where the disk takes no hard links, a rename after a check for the path.
Folders the new path needs are made, and taken away again if the move fails. The caller
(``routes/files.py``) moves the file's row next (``file_records.move``) and, if that fails,
calls ``Moved.undo`` so that the disk and the rows agree again.

A folder moves with everything below it (``move_folder``): an empty folder is made at the new
path (it fails if anything is there), and the folder is renamed onto it, which replaces only
an empty folder: something put there meanwhile makes it a 409, and nothing moved.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NamedTuple

from appyard.errors import ApiError, BadRequestError, ConflictError, NotFoundError
from appyard.schemas.files import FileInfo
from appyard.server.services.file_tree import TeamFiles, file_info, remove_folders

#: ``os.link`` errors of a disk (or a mount) that takes no hard links: a rename instead
_NO_LINKS = {errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK, errno.EXDEV}


class SourceGone(Exception):
    """The file is not (or no longer) a regular file at its old path: removed or moved
    meanwhile, or replaced by a folder or a link. The route answers the id's 404."""


class Moved(NamedTuple):
    """A file moved on disk: what the API says of it at its new path, and how to put it back."""

    info: FileInfo
    undo: Callable[[], None]


def taken(path: str, field: str = "path") -> ConflictError:
    return ConflictError(
        f"{field}: {path!r} is taken (a file or folder is there); remove it first or choose "
        "another path. Nothing was moved.",
        field=field,
    )


def move_file(files: TeamFiles, src: str, dst: str) -> Moved:
    """Move the regular file at team path ``src`` to ``dst`` (both normalized, different).

    ``dst`` must be free: a file or folder there is a 409 on ``path``, a path under a file a
    409, a symbolic link on the way a 422 (``TeamFiles.resolve``), the root a 422.
    """
    if dst == "/":
        raise BadRequestError(
            "path: '/' is the team's root folder; give the file's new path, like "
            "'/exports/result.tar'",
            field="path",
        )
    try:
        src_disk, src_st = files.resolve(src)
    except (NotFoundError, BadRequestError, ConflictError):
        raise SourceGone(src) from None  # a link on its way: not the team's file any more
    if src_st is None or not stat.S_ISREG(src_st.st_mode):
        raise SourceGone(src)
    _, dst_st = files.resolve(dst, write=True)
    if dst_st is not None:
        raise taken(dst)
    parent, name = dst.rsplit("/", 1)
    made, folder, _ = files.make_folders(parent or "/")
    target = folder / name
    try:
        _place(src_disk, target)
        st = os.lstat(target)
    except FileExistsError:
        remove_folders(made)
        raise taken(dst) from None
    except (FileNotFoundError, NotADirectoryError):
        remove_folders(made)  # the file (or a folder on the way) went meanwhile
        raise SourceGone(src) from None
    except OSError as exc:
        remove_folders(made)
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise ApiError(
                "The server's disk for team files is full; nothing was moved.",
                status_code=507,
                code="storage_full",
            ) from exc
        raise
    except BaseException:
        remove_folders(made)
        raise

    def undo() -> None:
        """Put the file back at ``src`` (best effort: a path taken meanwhile is left alone)."""
        with contextlib.suppress(OSError):
            _place(target, src_disk)
        remove_folders(made)

    return Moved(file_info(dst, st), undo)


def _place(src: Path, dst: Path) -> None:
    """Move ``src`` to ``dst``, never over something at ``dst`` (``FileExistsError``)."""
    try:
        os.link(src, dst, follow_symlinks=False)
    except OSError as exc:
        if exc.errno not in _NO_LINKS:
            raise
        if os.path.lexists(dst):
            raise FileExistsError(errno.EEXIST, "taken", str(dst)) from None
        os.rename(src, dst)
        return
    if not stat.S_ISREG(os.lstat(dst).st_mode):  # the source was swapped for a link meanwhile
        os.unlink(dst)
        raise FileNotFoundError(errno.ENOENT, "not a regular file", str(src))
    try:
        os.unlink(src)
    except FileNotFoundError:
        # moved (or removed) meanwhile by a racing request, which linked it too: that one
        # took it, the one that unlinks first; this one takes its link back and loses
        os.unlink(dst)
        raise


def move_folder(files: TeamFiles, src: str, dst: str) -> Moved:
    """Move the folder at team path ``src`` (normalized) and all below it to ``dst``.

    ``src`` must be a folder other than the root (a 404 on ``src`` when it is not there, a
    422 when it is a file), ``dst`` free and not inside ``src`` (409 and 422 on ``dst``).
    """
    if src == "/":
        raise BadRequestError(
            "src: '/' is the team's root folder, which stays where it is; move what is in it",
            field="src",
        )
    if dst == "/" or dst == src or dst.startswith(src + "/"):
        raise BadRequestError(
            f"dst: {dst!r} is {'the root' if dst == '/' else 'inside ' + repr(src)}; a folder "
            "moves to a free path outside itself, like '/archive/2024'",
            field="dst",
        )
    with _naming("src"):
        src_disk, src_st = files.resolve(src)
    if src_st is None:
        raise NotFoundError(
            f"src: no folder {src!r} in the team's files; list them to see what is there",
            field="src",
        )
    if not stat.S_ISDIR(src_st.st_mode):
        raise BadRequestError(
            f"src: {src!r} is a file; a file moves with PATCH /files/{{id}} "
            "(api.file.move, `appyard files mv`)",
            field="src",
        )
    with _naming("dst"):
        _, dst_st = files.resolve(dst, write=True)
        if dst_st is not None:
            raise taken(dst, "dst")
        parent, name = dst.rsplit("/", 1)
        made, folder, _ = files.make_folders(parent or "/")
    target = folder / name
    try:
        os.mkdir(target)  # ours now: a racing write there fails, or lands in it (below)
    except FileExistsError:
        remove_folders(made)
        raise taken(dst, "dst") from None
    try:
        os.rename(src_disk, target)  # replaces only an empty folder: ours, if nothing came
        st = os.lstat(target)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.rmdir(target)
        remove_folders(made)
        if isinstance(exc, FileNotFoundError | NotADirectoryError):
            raise NotFoundError(
                f"src: the folder {src!r} was removed or moved meanwhile; nothing was moved",
                field="src",
            ) from None
        if isinstance(exc, OSError) and exc.errno in (errno.ENOTEMPTY, errno.EEXIST):
            raise taken(dst, "dst") from None
        raise

    def undo() -> None:
        """Put the folder back at ``src`` (best effort: a path taken meanwhile stays)."""
        with contextlib.suppress(OSError):
            os.rename(target, src_disk)
        remove_folders(made)

    return Moved(file_info(dst, st), undo)


@contextlib.contextmanager
def _naming(field: str) -> Iterator[None]:
    """The team tree's refusals of a path (a link on the way, a file where a folder must be)
    as refusals of ``field``, the body's name for that path."""
    try:
        yield
    except ApiError as exc:
        exc.field = field
        exc.message = exc.message.removeprefix("path: ")
        if not exc.message.startswith(f"{field}: "):
            exc.message = f"{field}: {exc.message}"
        raise
