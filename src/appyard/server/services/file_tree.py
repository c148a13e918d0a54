"""One team's file tree on disk, under ``files_dir/<team_id>/``: resolve, read, make, remove.

Every method takes a path that went through ``file_paths.normalize``. ``TeamFiles`` resolves it
under the team's root, refusing any symbolic link on the way (and checking the resolved path is
still inside the root), so no path escapes its team's root whatever is on the disk.

A recursive delete first renames the folder out of sight, so the path is gone at once even if
removing the tree takes long. Requests race with such deletes: making folders starts again when
one on the way is taken away (a 409 if that keeps happening), and a download reads the file it
opened before answering. None is a 500. Uploads (``file_upload``) build on this.
"""

from __future__ import annotations

import errno
import os
import secrets
import shutil
import stat
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

from appyard.errors import BadRequestError, ConflictError, NotFoundError
from appyard.schemas.files import FileInfo
from appyard.server.services.file_paths import RESERVED_PREFIX, join, path_parts

_TRASH_PREFIX = RESERVED_PREFIX + "trash-"
#: how often making folders starts again when a racing delete takes them away meanwhile
RACE_ATTEMPTS = 5


def file_info(path: str, st: os.stat_result) -> FileInfo:
    """What the API says of a team file or folder, from its stat (a folder's size is 0)."""
    is_dir = stat.S_ISDIR(st.st_mode)
    return FileInfo(
        path=path,
        name=path.rsplit("/", 1)[-1],
        is_dir=is_dir,
        size=0 if is_dir else st.st_size,
        modified_at=datetime.fromtimestamp(st.st_mtime, UTC),
    )


class TeamFiles:
    """One team's file tree; every method takes a path that went through ``normalize``."""

    def __init__(self, files_dir: Path, team_id: int) -> None:
        self.team_id = team_id
        self.root = files_dir / str(team_id)

    # -- resolving -------------------------------------------------------------------------------

    def _root(self) -> Path:
        self.root.mkdir(parents=True, exist_ok=True)
        return self.root.resolve()

    def resolve(self, path: str, write: bool = False) -> tuple[Path, os.stat_result | None]:
        """The disk path of ``path`` and its stat (None if missing), refusing symbolic links.

        Every existing component is checked with ``lstat``: a symbolic link anywhere on the way
        is a 422. A file where a folder is needed means ``path`` does not exist for a read, and
        is a 409 naming that file for a write (``write``).
        """
        root = self._root()
        current = root
        st: os.stat_result | None = os.lstat(root)
        parts = path_parts(path)
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
        disk, st = self.resolve(path)
        if st is None:
            raise self._missing(path)
        return disk, st

    # -- reading ---------------------------------------------------------------------------------

    def info(self, path: str) -> FileInfo:
        _, st = self._existing(path)
        return file_info(path, st)

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
                child = join(team_path, entry.name)
                out.append(file_info(child, entry_st))
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
        _, st = self.resolve(path)
        return st is not None and stat.S_ISREG(st.st_mode)

    # -- writing ---------------------------------------------------------------------------------

    def make_folders(self, path: str) -> tuple[list[Path], Path, os.stat_result]:
        """``mkdir -p`` of ``path``: the folders it created (outermost first), the folder's disk
        path and its stat.

        A recursive delete racing with it may take away a folder on the way (or the whole tree)
        between two steps: then what this call made is undone and it starts again, from the
        checks; if that keeps happening, a 409.
        """
        for _ in range(RACE_ATTEMPTS):
            disk, st = self.resolve(path, write=True)
            if st is not None:
                if not stat.S_ISDIR(st.st_mode):
                    raise ConflictError(
                        f"{path!r} is a file; a folder cannot be made there.", field="path"
                    )
                return [], disk, st
            made: list[Path] = []
            current = self._root()
            parts = path_parts(path)
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
                remove_folders(made)
                continue
            except BaseException:
                remove_folders(made)
                raise
            if stat.S_ISDIR(st.st_mode):
                return made, current, st
            remove_folders(made)  # a file took its place meanwhile: the checks will say so
        raise self.removed_meanwhile(path)

    def removed_meanwhile(self, path: str) -> ConflictError:
        """The 409 when racing deletes keep taking the folders of ``path`` away."""
        return ConflictError(
            f"The folders of {path!r} kept being removed while they were being made; "
            "nothing was made. Try again once they are no longer being removed.",
            field="path",
        )

    def mkdir(self, path: str) -> FileInfo:
        _, _, st = self.make_folders(path)
        return file_info(path, st)

    def _changed_meanwhile(self, path: str) -> ConflictError:
        return ConflictError(
            f"{path!r} was replaced (a file by a folder, or the reverse) while it was being "
            "removed; nothing was removed. Look again and remove what is there now.",
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


def remove_folders(made: list[Path]) -> None:
    """Remove folders an aborted write made, innermost first, unless something else is in them."""
    for folder in reversed(made):
        try:
            os.rmdir(folder)
        except FileNotFoundError:
            continue  # taken away meanwhile (a recursive delete): its parent may still be ours
        except OSError:
            return
