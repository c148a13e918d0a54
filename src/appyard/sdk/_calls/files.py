"""The calls of ``api.file``: the team's files (docs/data.md)."""

from __future__ import annotations

import builtins
import os
from pathlib import Path, PurePosixPath

from pydantic import TypeAdapter

from appyard.errors import InvalidArgumentsError, NotFoundError
from appyard.schemas.files import FileInfo, FolderCreate
from appyard.sdk._calls.effects import Op, download, request
from appyard.sdk._core import Params

#: the server's answer to an upload comes after it made the file durable: allow it time
UPLOAD_READ_TIMEOUT_S = 600.0

_FILE_LIST = TypeAdapter(list[FileInfo])
LocalPath = str | os.PathLike[str]


def join(folder: str, *names: str) -> str:
    """``join("/a", "b/c")`` -> ``"/a/b/c"``: team paths put together with one ``/`` each."""
    parts = [p for p in (folder, *names) if p]
    joined = "/".join(p.strip("/") for p in parts)
    return "/" + "/".join(x for x in joined.split("/") if x)


def _files(team_id: int, what: str = "") -> str:
    return f"/teams/{int(team_id)}/files{what}"


# -- reading -----------------------------------------------------------------------------------


def list_folder(team_id: int, path: str, recursive: bool) -> Op[builtins.list[FileInfo]]:
    params: Params = {"path": path, "recursive": recursive}
    return _FILE_LIST.validate_python((yield from request("GET", _files(team_id), params=params)))


def get_info_by_path(team_id: int, path: str) -> Op[FileInfo | None]:
    try:
        data = yield from request("GET", _files(team_id, "/info"), params={"path": path})
    except NotFoundError as exc:
        if exc.field == "path":
            return None
        raise  # the team itself is not found: not a question of the path
    return FileInfo.model_validate(data)


def get_info_by_id(file_id: int) -> Op[FileInfo]:
    data = yield from request("GET", f"/files/{int(file_id)}")
    return FileInfo.model_validate(data)


def exists(team_id: int, path: str) -> Op[bool]:
    info = yield from get_info_by_path(team_id, path)
    return info is not None and not info.is_dir


def dir_exists(team_id: int, path: str) -> Op[bool]:
    info = yield from get_info_by_path(team_id, path)
    return info is not None and info.is_dir


# -- writing -----------------------------------------------------------------------------------


def mkdir(team_id: int, path: str) -> Op[FileInfo]:
    body = FolderCreate(path=path).model_dump()
    data = yield from request("POST", _files(team_id, "/folders"), json=body, idempotent=True)
    return FileInfo.model_validate(data)


def move_by_id(file_id: int, dst: str) -> Op[FileInfo]:
    # says where the file ends up, not a step: sent again (a retry), the file is there already;
    # the path goes as it is, so that the server's 422 names it
    body = {"path": dst}
    data = yield from request("PATCH", f"/files/{int(file_id)}", json=body, idempotent=True)
    return FileInfo.model_validate(data)


def move(team_id: int, src: str, dst: str) -> Op[FileInfo]:
    info = yield from get_info_by_path(team_id, src)
    if info is None:
        raise NotFoundError(
            f"No file {src!r} in team {team_id}'s files; list them with api.file.list",
            field="path",
        )
    if info.is_dir:
        return (yield from move_folder(team_id, info.path, dst))
    if info.id is None:
        raise InvalidArgumentsError(
            f"{info.path!r} has no id (its name is not UTF-8 text), so it cannot be moved "
            "through the API; rename it on the server's disk"
        )
    return (yield from move_by_id(info.id, dst))


def move_folder(team_id: int, src: str, dst: str) -> Op[FileInfo]:
    # a step, not a state: sent again after the server did it, ``src`` is gone (a 404)
    body = {"src": src, "dst": dst}  # as it is: the server's 422 names the field
    data = yield from request("POST", _files(team_id, "/folders/move"), json=body)
    return FileInfo.model_validate(data)


def remove(team_id: int, path: str, recursive: bool) -> Op[None]:
    params: Params = {"path": path, "recursive": recursive}
    yield from request("DELETE", _files(team_id), params=params)


def upload(team_id: int, src: LocalPath, dst: str) -> Op[FileInfo]:
    local = Path(src)
    if not local.is_file():
        raise InvalidArgumentsError(f"{local} is not a file; upload_directory takes folders")
    with open(local, "rb") as f:  # sent in pieces, from the start again on a retry
        data = yield from request(
            "PUT",
            _files(team_id, "/content"),
            params={"path": dst},
            content=f,
            headers={"Content-Type": "application/octet-stream"},
            min_timeout=UPLOAD_READ_TIMEOUT_S,
        )
    return FileInfo.model_validate(data)


def upload_directory(
    team_id: int, local_dir: LocalPath, remote_dir: str
) -> Op[builtins.list[FileInfo]]:
    root = Path(local_dir)
    if not root.is_dir():
        raise InvalidArgumentsError(f"{root} is not a folder; upload takes single files")
    yield from mkdir(team_id, remote_dir)
    uploaded: builtins.list[FileInfo] = []
    for folder, dirs, names in os.walk(root):
        dirs.sort()
        rel = Path(folder).relative_to(root).as_posix()
        target = join(remote_dir, "" if rel == "." else rel)
        if not names and not dirs:
            yield from mkdir(team_id, target)
        for name in sorted(names):
            local = Path(folder) / name
            if local.is_file():
                uploaded.append((yield from upload(team_id, local, join(target, name))))
    return uploaded


def download_file(team_id: int, remote_path: str, local_path: LocalPath) -> Op[None]:
    return download(local_path, _files(team_id, "/content"), params={"path": remote_path})


def download_directory(team_id: int, remote_dir: str, local_dir: LocalPath) -> Op[None]:
    base = join(remote_dir)
    root = Path(local_dir)
    root.mkdir(parents=True, exist_ok=True)
    resolved = root.resolve()
    for entry in (yield from list_folder(team_id, base, True)):
        rel = PurePosixPath(entry.path).relative_to(base)
        if any(part in ("", ".", "..") for part in rel.parts):
            raise InvalidArgumentsError(f"the server listed a strange path {entry.path!r}")
        local = root.joinpath(*rel.parts)
        if not local.resolve().is_relative_to(resolved):
            raise InvalidArgumentsError(f"{entry.path!r} would land outside {root}")
        if entry.is_dir:
            local.mkdir(parents=True, exist_ok=True)
        else:
            yield from download_file(team_id, entry.path, local)
