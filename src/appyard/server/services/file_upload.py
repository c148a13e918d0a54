"""Uploads into team files: all of a file lands at once, or nothing does.

An upload streams into a temporary file next to its target and is renamed over it
(``os.replace``) only when complete; a failed upload removes the temporary file and the folders
it made. An upload whose folder a recursive delete removed meanwhile writes nothing (a 409), a
body over the limit is a 413 and a full disk a 507: none is a 500.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import stat
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import BinaryIO, NamedTuple

import anyio.to_thread

from appyard.errors import ApiError, BadRequestError, ConflictError
from appyard.schemas.files import FileInfo
from appyard.server.services.file_paths import RESERVED_PREFIX
from appyard.server.services.file_tree import RACE_ATTEMPTS, TeamFiles, file_info, remove_folders

_UPLOAD_PREFIX = RESERVED_PREFIX + "upload-"
#: an upload is written to disk in pieces of about this size
WRITE_CHUNK = 1024 * 1024


def begin_upload(files: TeamFiles, path: str) -> Upload:
    """A temporary file next to ``path``, to be filled and then committed or aborted."""
    if path == "/":
        raise BadRequestError(
            "path: '/' is the team's root folder; give a file path like '/data/a.bin'",
            field="path",
        )
    disk, st = files.resolve(path, write=True)
    if st is not None and stat.S_ISDIR(st.st_mode):
        raise _folder_there(path)
    parent = path.rsplit("/", 1)[0] or "/"
    for _ in range(RACE_ATTEMPTS):
        made, folder, _ = files.make_folders(parent)
        try:
            fd, tmp = tempfile.mkstemp(dir=folder, prefix=_UPLOAD_PREFIX, suffix=".part")
            break
        except (FileNotFoundError, NotADirectoryError):
            # the folder was removed meanwhile (a recursive delete, or a failed upload next
            # to this one removing the folder it had made): again
            remove_folders(made)
        except BaseException:
            remove_folders(made)
            raise
    else:
        raise files.removed_meanwhile(path)
    upload = Upload(files, path, disk, Path(tmp), os.fdopen(fd, "wb"), made)
    try:
        os.fchmod(fd, 0o644)  # mkstemp makes it 0600; a team file is an ordinary file
    except BaseException:
        upload.abort()
        raise
    return upload


def _folder_there(path: str) -> ConflictError:
    return ConflictError(
        f"{path!r} is a folder; a file cannot replace it. Remove the folder first "
        "or upload to a path inside it.",
        field="path",
    )


class Received(NamedTuple):
    """A committed upload: what the API says of it, the sha256 of what was written, and the
    file's modification time (the hash holds while the file on disk still has it)."""

    info: FileInfo
    sha256: str
    mtime_ns: int


class Upload:
    """A file being uploaded: ``write`` pieces, then ``commit`` (rename into place) or ``abort``."""

    def __init__(
        self,
        files: TeamFiles,
        path: str,
        target: Path,
        tmp: Path,
        handle: BinaryIO,
        made: list[Path],
    ) -> None:
        self.files = files
        self.path = path
        self.target = target
        self.tmp = tmp
        self.handle = handle
        self.made = made
        self.size = 0
        self.digest = hashlib.sha256()

    def write(self, data: bytes) -> None:
        self.handle.write(data)
        self.digest.update(data)
        self.size += len(data)

    def commit(self) -> Received:
        """Make the file whole on disk, then put it in place in one rename.

        If a recursive delete took the folder away while the body streamed in (the temporary
        file went with it), nothing is written: a 409, and the folders are left to whoever acts
        on them now.
        """
        try:
            self.handle.flush()
            os.fsync(self.handle.fileno())
            st = os.fstat(self.handle.fileno())  # the file's stat, whatever happens to it next
            self.handle.close()
            # checked again: the tree may have changed while the body streamed in
            target, target_st = self.files.resolve(self.path, write=True)
            if target_st is not None and stat.S_ISDIR(target_st.st_mode):
                raise _folder_there(self.path)
            if target.parent != self.tmp.parent:
                raise ConflictError(
                    f"The folders of {self.path!r} changed during the upload; upload again.",
                    field="path",
                )
            os.replace(self.tmp, target)
        except (FileNotFoundError, NotADirectoryError):
            # the temporary file is gone with its folder (or the folder is no longer one): a
            # recursive delete happened meanwhile; what it moved away it removes itself
            with contextlib.suppress(OSError):
                self.handle.close()
            with contextlib.suppress(OSError):
                self.tmp.unlink(missing_ok=True)
            raise ConflictError(
                f"The folder of {self.path!r} was removed during the upload; nothing was "
                "written. Upload again if the file is still wanted there.",
                field="path",
            ) from None
        except BaseException:
            self.abort()
            raise
        return Received(file_info(self.path, st), self.digest.hexdigest(), st.st_mtime_ns)

    def abort(self) -> None:
        """Leave nothing behind: the temporary file and any folder this upload made."""
        with contextlib.suppress(OSError):
            self.handle.close()
        self.tmp.unlink(missing_ok=True)
        remove_folders(self.made)


def too_large(limit: int) -> ApiError:
    return ApiError(
        f"body: the file is larger than the server's limit of {limit} bytes "
        "(APPYARD_MAX_FILE_BYTES)",
        field="body",
        status_code=413,
        code="too_large",
    )


async def receive(
    files: TeamFiles,
    path: str,
    chunks: AsyncIterator[bytes],
    limit: int,
    declared: int | None = None,
) -> Received:
    """Stream ``chunks`` into team file ``path``: all of it lands at once, or nothing does.

    Disk work runs in worker threads, in pieces of ``WRITE_CHUNK``; more than ``limit`` bytes
    (or a ``declared`` length over it) is a 413. If the stream fails (the client went away),
    the temporary file and the folders made for it are removed before the error goes on.
    """
    if declared is not None and declared > limit:
        raise too_large(limit)
    upload = await anyio.to_thread.run_sync(begin_upload, files, path)
    try:
        pending = bytearray()
        async for chunk in chunks:
            if upload.size + len(pending) + len(chunk) > limit:
                raise too_large(limit)
            pending += chunk
            if len(pending) >= WRITE_CHUNK:
                await anyio.to_thread.run_sync(upload.write, bytes(pending))
                pending.clear()
        if pending:
            await anyio.to_thread.run_sync(upload.write, bytes(pending))
    except OSError as exc:
        upload.abort()
        full = _disk_full(exc)
        if full is None:
            raise
        raise full from exc
    except BaseException:
        upload.abort()
        raise
    try:
        return await anyio.to_thread.run_sync(upload.commit)  # it aborts itself on failure
    except OSError as exc:
        full = _disk_full(exc)
        if full is None:
            raise
        raise full from exc


def _disk_full(exc: OSError) -> ApiError | None:
    if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
        return None
    return ApiError(
        "The server's disk for team files is full; nothing was written.",
        status_code=507,
        code="storage_full",
    )
