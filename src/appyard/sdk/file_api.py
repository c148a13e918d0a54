"""``api.file``: the team's files (docs/data.md).

Paths on the server are team-relative (``/exports/result.tar``). Uploads stream from the local
file (never read whole into memory) and are retried like any PUT: sending the same content
again is harmless, the server writes a file whole or not at all. Downloads stream into a
temporary file next to the local target and are renamed over it when complete (as image
downloads). ``FileApi`` and ``AsyncFileApi`` are thin shells over the same calls
(``_calls.files``).
"""

from __future__ import annotations

import builtins

from appyard.schemas.files import FileInfo
from appyard.sdk._async import AsyncCore
from appyard.sdk._calls import files as calls
from appyard.sdk._calls.effects import twin_of
from appyard.sdk._calls.files import UPLOAD_READ_TIMEOUT_S, LocalPath, join
from appyard.sdk._sync import SyncCore

__all__ = ["UPLOAD_READ_TIMEOUT_S", "AsyncFileApi", "FileApi", "LocalPath", "join"]


class FileApi:
    """Upload, download, list, move and remove team files; paths are team-relative."""

    def __init__(self, core: SyncCore) -> None:
        self._core = core

    # -- reading ---------------------------------------------------------------------------------

    def list(
        self, team_id: int, path: str = "/", recursive: bool = False
    ) -> builtins.list[FileInfo]:
        """The entries of folder ``path`` (everything below it when ``recursive``), by path."""
        return self._core.run(calls.list_folder(team_id, path, recursive))

    def get_info_by_path(self, team_id: int, path: str) -> FileInfo | None:
        """The file or folder at ``path``, or None if there is none."""
        return self._core.run(calls.get_info_by_path(team_id, path))

    def get_info_by_id(self, file_id: int) -> FileInfo:
        """The team file with this id (every file listed or uploaded has one; it stays while
        the file is at its path, a new upload there included). ``NotFoundError`` when there is
        no such file now, or it is not in one of your teams."""
        return self._core.run(calls.get_info_by_id(file_id))

    def exists(self, team_id: int, path: str) -> bool:
        """True when ``path`` is a file (a folder there does not count)."""
        return self._core.run(calls.exists(team_id, path))

    def dir_exists(self, team_id: int, path: str) -> bool:
        """True when ``path`` is a folder."""
        return self._core.run(calls.dir_exists(team_id, path))

    # -- writing ---------------------------------------------------------------------------------

    def mkdir(self, team_id: int, path: str) -> FileInfo:
        """Make folder ``path`` and its parents (fine if it exists)."""
        return self._core.run(calls.mkdir(team_id, path))

    def move(self, team_id: int, src: str, dst: str) -> FileInfo:
        """Move (or rename) team file or folder ``src`` to ``dst`` in the same team; a file
        keeps its id, and so do the files in a folder. ``dst`` must be free
        (``ConflictError``), and outside ``src`` for a folder; folders it needs are made."""
        return self._core.run(calls.move(team_id, src, dst))

    def move_by_id(self, file_id: int, dst: str) -> FileInfo:
        """``move`` of the team file with this id."""
        return self._core.run(calls.move_by_id(file_id, dst))

    def remove(self, team_id: int, path: str, recursive: bool = False) -> None:
        """Remove a file, or a folder (one with something in it needs ``recursive``)."""
        self._core.run(calls.remove(team_id, path, recursive))

    def upload(self, team_id: int, src: LocalPath, dst: str) -> FileInfo:
        """Upload local file ``src`` to team path ``dst`` (parent folders are made; an existing
        file is replaced at once, never seen half-written)."""
        return self._core.run(calls.upload(team_id, src, dst))

    def upload_directory(
        self, team_id: int, local_dir: LocalPath, remote_dir: str
    ) -> builtins.list[FileInfo]:
        """Upload the files below ``local_dir`` to ``remote_dir``, keeping the tree (empty
        folders included); returns the uploaded files. Symbolic links to folders are skipped."""
        return self._core.run(calls.upload_directory(team_id, local_dir, remote_dir))

    def download(self, team_id: int, remote_path: str, local_path: LocalPath) -> None:
        """Download team file ``remote_path`` to ``local_path`` (its folder is made); the local
        file appears complete or not at all."""
        self._core.run(calls.download_file(team_id, remote_path, local_path))

    def download_directory(self, team_id: int, remote_dir: str, local_dir: LocalPath) -> None:
        """Download everything below folder ``remote_dir`` into ``local_dir``, keeping the tree."""
        self._core.run(calls.download_directory(team_id, remote_dir, local_dir))


@twin_of(FileApi)
class AsyncFileApi:
    def __init__(self, core: AsyncCore) -> None:
        self._core = core

    async def list(
        self, team_id: int, path: str = "/", recursive: bool = False
    ) -> builtins.list[FileInfo]:
        return await self._core.run(calls.list_folder(team_id, path, recursive))

    async def get_info_by_path(self, team_id: int, path: str) -> FileInfo | None:
        return await self._core.run(calls.get_info_by_path(team_id, path))

    async def get_info_by_id(self, file_id: int) -> FileInfo:
        return await self._core.run(calls.get_info_by_id(file_id))

    async def exists(self, team_id: int, path: str) -> bool:
        return await self._core.run(calls.exists(team_id, path))

    async def dir_exists(self, team_id: int, path: str) -> bool:
        return await self._core.run(calls.dir_exists(team_id, path))

    async def mkdir(self, team_id: int, path: str) -> FileInfo:
        return await self._core.run(calls.mkdir(team_id, path))

    async def move(self, team_id: int, src: str, dst: str) -> FileInfo:
        return await self._core.run(calls.move(team_id, src, dst))

    async def move_by_id(self, file_id: int, dst: str) -> FileInfo:
        return await self._core.run(calls.move_by_id(file_id, dst))

    async def remove(self, team_id: int, path: str, recursive: bool = False) -> None:
        await self._core.run(calls.remove(team_id, path, recursive))

    async def upload(self, team_id: int, src: LocalPath, dst: str) -> FileInfo:
        return await self._core.run(calls.upload(team_id, src, dst))

    async def upload_directory(
        self, team_id: int, local_dir: LocalPath, remote_dir: str
    ) -> builtins.list[FileInfo]:
        return await self._core.run(calls.upload_directory(team_id, local_dir, remote_dir))

    async def download(self, team_id: int, remote_path: str, local_path: LocalPath) -> None:
        await self._core.run(calls.download_file(team_id, remote_path, local_path))

    async def download_directory(self, team_id: int, remote_dir: str, local_dir: LocalPath) -> None:
        await self._core.run(calls.download_directory(team_id, remote_dir, local_dir))
