"""Team files: one file tree per team under ``files_dir/<team_id>/``, addressed by team paths.

A team path is absolute within the team's root (``/exports/a.tar``). ``normalize`` is the one
gate every path goes through: ``.``/``..`` segments, NUL and other control characters,
backslashes, over-long paths and names, and names of our own temporary files are refused with a
422 on the field. ``TeamFiles`` then resolves a normalized path under the root, refusing any
symbolic link on the way (and checking the resolved path is still inside the root), so no path
escapes its team's root whatever is on the disk.

Writes are atomic: an upload streams into a temporary file next to its target and is renamed
over it (``os.replace``) only when complete; a failed upload removes the temporary file and
the folders it made. A recursive delete first renames the folder out of sight, so the path is
gone at once even if removing the tree takes long.

Requests race with such deletes: making folders starts again when one on the way is taken
away (a 409 if that keeps happening), an upload whose folder was removed meanwhile writes
nothing (a 409), and a download reads the file it opened before answering. None is a 500.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import shutil
import stat
import tempfile
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

import anyio.to_thread
from sqlalchemy.orm import Session

from appyard.errors import ApiError, BadRequestError, ConflictError, NotFoundError
from appyard.schemas.accounts import Role
from appyard.schemas.files import FileInfo
from appyard.server.security import Principal
from appyard.server.services.accounts import team_role

#: longest team path, in characters (as ``FolderCreate.path``)
MAX_PATH_CHARS = 1024
#: longest name of one file or folder, in UTF-8 bytes (what Linux file systems allow)
MAX_NAME_BYTES = 255
#: names starting with this are the server's own temporary files: hidden and refused
RESERVED_PREFIX = ".appyard-"
_UPLOAD_PREFIX = RESERVED_PREFIX + "upload-"
_TRASH_PREFIX = RESERVED_PREFIX + "trash-"
#: an upload is written to disk in pieces of about this size
WRITE_CHUNK = 1024 * 1024
#: how often making folders starts again when a racing delete takes them away meanwhile
_RACE_ATTEMPTS = 5


def _invalid(field: str, raw: str, problem: str) -> BadRequestError:
    shown = raw if len(raw) <= 200 else raw[:200] + "..."
    return BadRequestError(f"{field}: {problem} (got {shown!r})", field=field)


def normalize(raw: object, field: str = "path") -> str:
    """The canonical form of a team path: ``/a/b`` (the root is ``/``), or a 422 on ``field``.

    A leading ``/`` is optional and repeated or trailing slashes are dropped; anything that
    could name a place outside the team's root, or that the disk cannot store, is refused.
    """
    if not isinstance(raw, str):
        raise BadRequestError(f"{field}: must be a string like '/folder/file.txt'", field=field)
    if not raw:
        raise _invalid(field, raw, "is empty; use '/' for the team's root")
    if len(raw) > MAX_PATH_CHARS:
        raise _invalid(field, raw, f"is longer than {MAX_PATH_CHARS} characters")
    if "\\" in raw:
        raise _invalid(field, raw, "contains a backslash; separate folders with '/'")
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in raw):
        raise _invalid(field, raw, "contains a NUL byte or another control character")
    parts = [part for part in raw.split("/") if part]
    for part in parts:
        if part in (".", ".."):
            raise _invalid(field, raw, f"contains a {part!r} segment; give the path from '/'")
        try:
            size = len(part.encode("utf-8"))
        except UnicodeEncodeError:
            raise _invalid(field, raw, "is not valid Unicode text") from None
        if size > MAX_NAME_BYTES:
            raise _invalid(field, raw, f"has a name longer than {MAX_NAME_BYTES} bytes")
        if part.startswith(RESERVED_PREFIX):
            raise _invalid(
                field, raw, f"names starting with {RESERVED_PREFIX!r} are reserved by the server"
            )
    return "/" + "/".join(parts)


def authorize(s: Session, p: Principal, team_id: int, need: Role) -> None:
    """Viewers read, developers write; another team (or an agent token): 404."""
    team_role(s, p, team_id, need)


def _parts(path: str) -> list[str]:
    return [part for part in path.split("/") if part]


def _info(path: str, st: os.stat_result) -> FileInfo:
    is_dir = stat.S_ISDIR(st.st_mode)
    return FileInfo(
        path=path,
        name=path.rsplit("/", 1)[-1],
        is_dir=is_dir,
        size=0 if is_dir else st.st_size,
        modified_at=datetime.fromtimestamp(st.st_mtime, UTC),
    )


def _join(folder: str, name: str) -> str:
    return f"{folder.rstrip('/')}/{name}"


class TeamFiles:
    """One team's file tree; every method takes a path that went through ``normalize``."""

    def __init__(self, files_dir: Path, team_id: int) -> None:
        self.team_id = team_id
        self.root = files_dir / str(team_id)

    # -- resolving -------------------------------------------------------------------------------

    def _root(self) -> Path:
        self.root.mkdir(parents=True, exist_ok=True)
        return self.root.resolve()

    def _resolve(self, path: str, write: bool = False) -> tuple[Path, os.stat_result | None]:
        """The disk path of ``path`` and its stat (None if missing), refusing symbolic links.

        Every existing component is checked with ``lstat``: a symbolic link anywhere on the way
        is a 422. A file where a folder is needed means ``path`` does not exist for a read, and
        is a 409 naming that file for a write (``write``).
        """
        root = self._root()
        current = root
        st: os.stat_result | None = os.lstat(root)
        parts = _parts(path)
        for i, part in enumerate(parts):
            current = current / part
            try:
                st = os.lstat(current)
            except FileNotFoundError:
                return current.joinpath(*parts[i + 1 :]), None
            except NotADirectoryError:  # cannot happen after the check below; be safe
                if write:
                    raise self._under_file(path, parts[:i]) from None
                return current.joinpath(*parts[i + 1 :]), None
            if stat.S_ISLNK(st.st_mode):
                shown = "/" + "/".join(parts[: i + 1])
                raise BadRequestError(
                    f"path: {shown!r} is a symbolic link; team files do not follow links",
                    field="path",
                )
            if i < len(parts) - 1 and not stat.S_ISDIR(st.st_mode):
                if write:
                    raise self._under_file(path, parts[: i + 1])
                return current.joinpath(*parts[i + 1 :]), None
        # belt and braces: whatever happened on the disk, the answer stays inside the root
        if not (current == root or current.resolve().is_relative_to(root)):
            raise BadRequestError(f"path: {path!r} leads outside the team's files", field="path")
        return current, st

    def _under_file(self, path: str, file_parts: list[str]) -> ConflictError:
        file_path = "/" + "/".join(file_parts)
        return ConflictError(
            f"{file_path!r} is a file, so {path!r} cannot be under it; "
            "remove the file or choose another path.",
            field="path",
        )

    def _missing(self, path: str) -> NotFoundError:
        return NotFoundError(
            f"No file or folder {path!r} in team {self.team_id}'s files.", field="path"
        )

    def _existing(self, path: str) -> tuple[Path, os.stat_result]:
        disk, st = self._resolve(path)
        if st is None:
            raise self._missing(path)
        return disk, st

    # -- reading ---------------------------------------------------------------------------------

    def info(self, path: str) -> FileInfo:
        _, st = self._existing(path)
        return _info(path, st)

    def listing(self, path: str, recursive: bool = False) -> list[FileInfo]:
        """The entries of folder ``path`` (all below it when ``recursive``), sorted by path.

        Symbolic links (made on the server's disk by hand) and the server's temporary files
        are left out; a recursive listing does not follow links either.
        """
        disk, st = self._existing(path)
        if not stat.S_ISDIR(st.st_mode):
            raise ConflictError(
                f"{path!r} is a file, not a folder; ask for its info instead.", field="path"
            )
        out: list[FileInfo] = []
        stack = [(disk, path)]
        while stack:
            folder, team_path = stack.pop()
            try:
                entries = list(os.scandir(folder))
            except (FileNotFoundError, NotADirectoryError):
                continue  # removed (or replaced by a file) meanwhile
            for entry in entries:
                if entry.name.startswith(RESERVED_PREFIX) or entry.is_symlink():
                    continue
                try:
                    entry_st = entry.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue
                if not (stat.S_ISDIR(entry_st.st_mode) or stat.S_ISREG(entry_st.st_mode)):
                    continue  # sockets, fifos, devices: not team files
                child = _join(team_path, entry.name)
                out.append(_info(child, entry_st))
                if recursive and stat.S_ISDIR(entry_st.st_mode):
                    stack.append((Path(entry.path), child))
        out.sort(key=lambda f: f.path)
        return out

    def open_for_download(self, path: str) -> tuple[BinaryIO, os.stat_result]:
        """The file at ``path``, open for reading, and its stat.

        Opened here, so that a delete racing with the download either comes first (a 404) or
        after (the open file is read whole all the same); the last step is not followed if it
        became a symbolic link meanwhile.
        """
        disk, st = self._existing(path)
        if stat.S_ISDIR(st.st_mode):
            raise self._folder_download(path)
        if not stat.S_ISREG(st.st_mode):
            raise self._missing(path)
        try:
            fd = os.open(disk, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | os.O_CLOEXEC)
        except (FileNotFoundError, NotADirectoryError):
            raise self._missing(path) from None
        except OSError as exc:
            if exc.errno != errno.ELOOP:
                raise
            raise self._missing(path) from None  # replaced by a link meanwhile: not a file
        handle = os.fdopen(fd, "rb")
        try:
            st = os.fstat(fd)
        except BaseException:
            handle.close()
            raise
        if stat.S_ISREG(st.st_mode):
            return handle, st
        handle.close()
        if stat.S_ISDIR(st.st_mode):  # a folder took its place meanwhile
            raise self._folder_download(path)
        raise self._missing(path)

    def _folder_download(self, path: str) -> ConflictError:
        return ConflictError(
            f"{path!r} is a folder; download its files one by one "
            "(api.file.download_directory does).",
            field="path",
        )

    def is_file(self, path: str) -> bool:
        """True when ``path`` is a regular file; a symbolic link on the way is a 422."""
        _, st = self._resolve(path)
        return st is not None and stat.S_ISREG(st.st_mode)

    # -- writing ---------------------------------------------------------------------------------

    def _make_folders(self, path: str) -> tuple[list[Path], Path, os.stat_result]:
        """``mkdir -p`` of ``path``: the folders it created (outermost first), the folder's disk
        path and its stat.

        A recursive delete racing with it may take away a folder on the way (or the whole tree)
        between two steps: then what this call made is undone and it starts again, from the
        checks; if that keeps happening, a 409.
        """
        for _ in range(_RACE_ATTEMPTS):
            disk, st = self._resolve(path, write=True)
            if st is not None:
                if not stat.S_ISDIR(st.st_mode):
                    raise ConflictError(
                        f"{path!r} is a file; a folder cannot be made there.", field="path"
                    )
                return [], disk, st
            made: list[Path] = []
            current = self._root()
            parts = _parts(path)
            try:
                for i, part in enumerate(parts):
                    current = current / part
                    try:
                        os.mkdir(current)
                        made.append(current)
                    except FileExistsError:
                        part_st = os.lstat(current)  # made by a racing request: fine if a folder
                        if stat.S_ISLNK(part_st.st_mode) or not stat.S_ISDIR(part_st.st_mode):
                            raise self._under_file(path, parts[: i + 1]) from None
                st = os.lstat(current)
            except (FileNotFoundError, NotADirectoryError):
                # a folder on the way was removed (or replaced) meanwhile: again, from the checks
                _remove_folders(made)
                continue
            except BaseException:
                _remove_folders(made)
                raise
            if stat.S_ISDIR(st.st_mode):
                return made, current, st
            _remove_folders(made)  # a file took its place meanwhile: the checks will say so
        raise self._removed_meanwhile(path)

    def _removed_meanwhile(self, path: str) -> ConflictError:
        return ConflictError(
            f"The folders of {path!r} kept being removed while they were being made; "
            "nothing was made. Try again once they are no longer being removed.",
            field="path",
        )

    def mkdir(self, path: str) -> FileInfo:
        _, _, st = self._make_folders(path)
        return _info(path, st)

    def begin_upload(self, path: str) -> Upload:
        """A temporary file next to ``path``, to be filled and then committed or aborted."""
        if path == "/":
            raise BadRequestError(
                "path: '/' is the team's root folder; give a file path like '/data/a.bin'",
                field="path",
            )
        disk, st = self._resolve(path, write=True)
        if st is not None and stat.S_ISDIR(st.st_mode):
            raise self._folder_there(path)
        parent = path.rsplit("/", 1)[0] or "/"
        for _ in range(_RACE_ATTEMPTS):
            made, folder, _ = self._make_folders(parent)
            try:
                fd, tmp = tempfile.mkstemp(dir=folder, prefix=_UPLOAD_PREFIX, suffix=".part")
                break
            except (FileNotFoundError, NotADirectoryError):
                # the folder was removed meanwhile (a recursive delete, or a failed upload next
                # to this one removing the folder it had made): again
                _remove_folders(made)
            except BaseException:
                _remove_folders(made)
                raise
        else:
            raise self._removed_meanwhile(path)
        upload = Upload(self, path, disk, Path(tmp), os.fdopen(fd, "wb"), made)
        try:
            os.fchmod(fd, 0o644)  # mkstemp makes it 0600; a team file is an ordinary file
        except BaseException:
            upload.abort()
            raise
        return upload

    def _changed_meanwhile(self, path: str) -> ConflictError:
        return ConflictError(
            f"{path!r} was replaced (a file by a folder, or the reverse) while it was being "
            "removed; nothing was removed. Look again and remove what is there now.",
            field="path",
        )

    def _folder_there(self, path: str) -> ConflictError:
        return ConflictError(
            f"{path!r} is a folder; a file cannot replace it. Remove the folder first "
            "or upload to a path inside it.",
            field="path",
        )

    def remove(self, path: str, recursive: bool = False) -> None:
        if path == "/":
            raise BadRequestError(
                "path: the team's root folder cannot be removed; remove what is in it",
                field="path",
            )
        disk, st = self._existing(path)
        if not stat.S_ISDIR(st.st_mode):
            try:
                os.unlink(disk)
            except (FileNotFoundError, NotADirectoryError):
                raise self._missing(path) from None
            except IsADirectoryError:
                raise self._changed_meanwhile(path) from None
            return
        try:
            os.rmdir(disk)
            return
        except FileNotFoundError:
            raise self._missing(path) from None
        except NotADirectoryError:
            raise self._changed_meanwhile(path) from None
        except OSError as exc:
            if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                raise
        if not recursive:
            raise ConflictError(
                f"Folder {path!r} is not empty; remove it with recursive=true "
                "(`appyard files rm -r`), or remove what is in it first.",
                field="path",
            )
        trash = disk.with_name(f"{_TRASH_PREFIX}{secrets.token_hex(8)}")
        try:
            os.rename(disk, trash)  # the path is gone at once; the tree goes next
        except FileNotFoundError:
            raise self._missing(path) from None
        shutil.rmtree(trash, ignore_errors=True)


def _remove_folders(made: list[Path]) -> None:
    """Remove folders an aborted write made, innermost first, unless something else is in them."""
    for folder in reversed(made):
        try:
            os.rmdir(folder)
        except FileNotFoundError:
            continue  # taken away meanwhile (a recursive delete): its parent may still be ours
        except OSError:
            return


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

    def write(self, data: bytes) -> None:
        self.handle.write(data)
        self.size += len(data)

    def commit(self) -> FileInfo:
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
            target, target_st = self.files._resolve(self.path, write=True)
            if target_st is not None and stat.S_ISDIR(target_st.st_mode):
                raise self.files._folder_there(self.path)
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
        return _info(self.path, st)

    def abort(self) -> None:
        """Leave nothing behind: the temporary file and any folder this upload made."""
        with contextlib.suppress(OSError):
            self.handle.close()
        self.tmp.unlink(missing_ok=True)
        _remove_folders(self.made)


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
) -> FileInfo:
    """Stream ``chunks`` into team file ``path``: all of it lands at once, or nothing does.

    Disk work runs in worker threads, in pieces of ``WRITE_CHUNK``; more than ``limit`` bytes
    (or a ``declared`` length over it) is a 413. If the stream fails (the client went away),
    the temporary file and the folders made for it are removed before the error goes on.
    """
    if declared is not None and declared > limit:
        raise too_large(limit)
    upload = await anyio.to_thread.run_sync(files.begin_upload, path)
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
