"""``api.file``: the team's files (docs/data.md).

Paths on the server are team-relative (``/exports/result.tar``). Uploads stream from the local
file (never read whole into memory) and are retried like any PUT: sending the same content
again is harmless, the server writes a file whole or not at all. Downloads stream into a
temporary file next to the local target and are renamed over it when complete
(``SyncCore.download_to``, as image downloads).
"""

from __future__ import annotations

import builtins
import os
from pathlib import Path, PurePosixPath

from pydantic import TypeAdapter

from appyard.errors import InvalidArgumentsError, NotFoundError
from appyard.schemas.files import FileInfo, FolderCreate
from appyard.sdk._core import SyncCore

#: the server's answer to an upload comes after it made the file durable: allow it time
UPLOAD_READ_TIMEOUT_S = 600.0

_FILE_LIST = TypeAdapter(list[FileInfo])
LocalPath = str | os.PathLike[str]


def join(folder: str, *names: str) -> str:
    """``join("/a", "b/c")`` -> ``"/a/b/c"``: team paths put together with one ``/`` each."""
    parts = [p for p in (folder, *names) if p]
    joined = "/".join(p.strip("/") for p in parts)
    return "/" + "/".join(x for x in joined.split("/") if x)


class FileApi:
    """Upload, download, list and remove team files; paths are team-relative."""

    def __init__(self, core: SyncCore) -> None:
        self._core = core

    # -- reading ---------------------------------------------------------------------------------

    def list(
        self, team_id: int, path: str = "/", recursive: bool = False
    ) -> builtins.list[FileInfo]:
        """The entries of folder ``path`` (everything below it when ``recursive``), by path."""
        data = self._core.request(
            "GET", f"/teams/{int(team_id)}/files", params={"path": path, "recursive": recursive}
        )
        return _FILE_LIST.validate_python(data)

    def get_info_by_path(self, team_id: int, path: str) -> FileInfo | None:
        """The file or folder at ``path``, or None if there is none."""
        try:
            data = self._core.request(
                "GET", f"/teams/{int(team_id)}/files/info", params={"path": path}
            )
        except NotFoundError as exc:
            if exc.field == "path":
                return None
            raise  # the team itself is not found: not a question of the path
        return FileInfo.model_validate(data)

    def exists(self, team_id: int, path: str) -> bool:
        """True when ``path`` is a file (a folder there does not count)."""
        info = self.get_info_by_path(team_id, path)
        return info is not None and not info.is_dir

    def dir_exists(self, team_id: int, path: str) -> bool:
        """True when ``path`` is a folder."""
        info = self.get_info_by_path(team_id, path)
        return info is not None and info.is_dir

    # -- writing ---------------------------------------------------------------------------------

    def mkdir(self, team_id: int, path: str) -> FileInfo:
        """Make folder ``path`` and its parents (fine if it exists)."""
        body = FolderCreate(path=path).model_dump()
        data = self._core.request(
            "POST", f"/teams/{int(team_id)}/files/folders", json=body, idempotent=True
        )
        return FileInfo.model_validate(data)

    def remove(self, team_id: int, path: str, recursive: bool = False) -> None:
        """Remove a file, or a folder (one with something in it needs ``recursive``)."""
        self._core.request(
            "DELETE", f"/teams/{int(team_id)}/files", params={"path": path, "recursive": recursive}
        )

    def upload(self, team_id: int, src: LocalPath, dst: str) -> FileInfo:
        """Upload local file ``src`` to team path ``dst`` (parent folders are made; an existing
        file is replaced at once, never seen half-written)."""
        local = Path(src)
        if not local.is_file():
            raise InvalidArgumentsError(f"{local} is not a file; upload_directory takes folders")
        with open(local, "rb") as f:  # sent in pieces, from the start again on a retry
            data = self._core.request(
                "PUT",
                f"/teams/{int(team_id)}/files/content",
                params={"path": dst},
                content=f,
                headers={"Content-Type": "application/octet-stream"},
                timeout=max(self._core.timeout, UPLOAD_READ_TIMEOUT_S),
            )
        return FileInfo.model_validate(data)

    def upload_directory(
        self, team_id: int, local_dir: LocalPath, remote_dir: str
    ) -> builtins.list[FileInfo]:
        """Upload the files below ``local_dir`` to ``remote_dir``, keeping the tree (empty
        folders included); returns the uploaded files. Symbolic links to folders are skipped."""
        root = Path(local_dir)
        if not root.is_dir():
            raise InvalidArgumentsError(f"{root} is not a folder; upload takes single files")
        self.mkdir(team_id, remote_dir)
        uploaded: builtins.list[FileInfo] = []
        for folder, dirs, names in os.walk(root):
            dirs.sort()
            rel = Path(folder).relative_to(root).as_posix()
            target = join(remote_dir, "" if rel == "." else rel)
            if not names and not dirs:
                self.mkdir(team_id, target)
            for name in sorted(names):
                local = Path(folder) / name
                if local.is_file():
                    uploaded.append(self.upload(team_id, local, join(target, name)))
        return uploaded

    def download(self, team_id: int, remote_path: str, local_path: LocalPath) -> None:
        """Download team file ``remote_path`` to ``local_path`` (its folder is made); the local
        file appears complete or not at all."""
        self._core.download_to(
            local_path, f"/teams/{int(team_id)}/files/content", params={"path": remote_path}
        )

    def download_directory(self, team_id: int, remote_dir: str, local_dir: LocalPath) -> None:
        """Download everything below folder ``remote_dir`` into ``local_dir``, keeping the tree."""
        base = join(remote_dir)
        root = Path(local_dir)
        root.mkdir(parents=True, exist_ok=True)
        resolved = root.resolve()
        for entry in self.list(team_id, base, recursive=True):
            rel = PurePosixPath(entry.path).relative_to(base)
            if any(part in ("", ".", "..") for part in rel.parts):
                raise InvalidArgumentsError(f"the server listed a strange path {entry.path!r}")
            local = root.joinpath(*rel.parts)
            if not local.resolve().is_relative_to(resolved):
                raise InvalidArgumentsError(f"{entry.path!r} would land outside {root}")
            if entry.is_dir:
                local.mkdir(parents=True, exist_ok=True)
            else:
                self.download(team_id, entry.path, local)
