"""``api.file``: the team's files (docs/data.md).

Paths on the server are team-relative (``/exports/result.tar``). Uploads stream from the local
file (never read whole into memory) and are retried like any PUT: sending the same content
again is harmless, the server writes a file whole or not at all. Downloads stream into a
temporary file next to the local target and are renamed over it when complete.
"""

from __future__ import annotations

import builtins
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath

import httpx
from pydantic import TypeAdapter

from appyard.errors import InvalidArgumentsError, NotFoundError
from appyard.schemas.files import FileInfo, FolderCreate
from appyard.sdk._core import RequestSpec, SyncCore, backoff_delay

#: pieces an upload is read and sent in, and a download written in
CHUNK = 1024 * 1024
#: the server's answer to an upload comes after it made the file durable: allow it time
UPLOAD_READ_TIMEOUT_S = 600.0

_FILE_LIST = TypeAdapter(list[FileInfo])
LocalPath = str | os.PathLike[str]


def join(folder: str, *names: str) -> str:
    """``join("/a", "b/c")`` -> ``"/a/b/c"``: team paths put together with one ``/`` each."""
    parts = [p for p in (folder, *names) if p]
    joined = "/".join(p.strip("/") for p in parts)
    return "/" + "/".join(x for x in joined.split("/") if x)


def _chunks(path: Path) -> Iterator[bytes]:
    with open(path, "rb") as f:
        while data := f.read(CHUNK):
            yield data


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
        size = local.stat().st_size
        response = self._send(
            RequestSpec("PUT", f"/teams/{int(team_id)}/files/content", {"path": dst}),
            lambda: _chunks(local),
            {"Content-Length": str(size), "Content-Type": "application/octet-stream"},
        )
        return FileInfo.model_validate(response.json())

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
        target = Path(local_path)
        target.parent.mkdir(parents=True, exist_ok=True)
        spec = RequestSpec("GET", f"/teams/{int(team_id)}/files/content", {"path": remote_path})
        attempt = 0
        while True:
            fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
            try:
                with os.fdopen(fd, "wb") as f, self._stream(spec) as response:
                    for data in response.iter_bytes(CHUNK):
                        f.write(data)
                os.chmod(tmp, 0o644)  # mkstemp makes it private; the file is an ordinary one
                os.replace(tmp, target)
                return
            except httpx.TransportError as exc:  # the connection broke mid-way: start again
                Path(tmp).unlink(missing_ok=True)
                if not self._core._should_retry(spec, exc, attempt):
                    raise self._core._unavailable(exc) from exc
                time.sleep(backoff_delay(attempt))
                attempt += 1
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise

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

    # -- streaming transport ---------------------------------------------------------------------

    def _send(
        self, spec: RequestSpec, content: Callable[[], Iterator[bytes]], headers: dict[str, str]
    ) -> httpx.Response:
        """Send a streamed body (``content()`` makes a fresh iterator per attempt), with the
        core's retry rules and typed errors."""
        core = self._core
        all_headers = {**core._headers(spec), **headers}
        timeout = httpx.Timeout(
            core.timeout,
            connect=min(core.timeout, 10.0),
            read=max(core.timeout, UPLOAD_READ_TIMEOUT_S),
        )
        attempt = 0
        while True:
            try:
                response = core.client.request(
                    spec.method,
                    spec.path,
                    params=spec.params,
                    content=content(),
                    headers=all_headers,
                    timeout=timeout,
                )
            except httpx.TransportError as exc:
                if not core._should_retry(spec, exc, attempt):
                    raise core._unavailable(exc) from exc
                time.sleep(backoff_delay(attempt))
                attempt += 1
                continue
            if core._retry_status(spec, response, attempt):
                time.sleep(backoff_delay(attempt))
                attempt += 1
                continue
            core.raise_for_response(response)
            return response

    @contextmanager
    def _stream(self, spec: RequestSpec) -> Iterator[httpx.Response]:
        """A streamed GET of file bytes; a 4xx/5xx answer raises its typed error."""
        core = self._core
        headers = {**core._headers(spec), "Accept": "application/octet-stream, application/json"}
        with core.client.stream(
            "GET", spec.path, params=spec.params, headers=headers, timeout=core._timeout(spec)
        ) as response:
            if not response.is_success:
                response.read()
                core.raise_for_response(response)
            yield response
