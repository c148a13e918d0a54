"""Team files: a file tree per team, addressed by team-relative paths (docs/data.md); each
file also has a stable id (``GET /files/{id}``, ``services/file_records.py``), kept when it
moves (``PATCH /files/{id}``, ``services/file_move.py``)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, BinaryIO
from urllib.parse import quote

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import StreamingResponse
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from starlette.requests import ClientDisconnect

from appyard.errors import BadRequestError, ConflictError, NotFoundError
from appyard.schemas.accounts import Role
from appyard.schemas.files import FileInfo, FileMove, FolderCreate, FolderMove
from appyard.server.db.models import TeamFile
from appyard.server.routes.deps import PathId, aread, arun, authenticated, context, read, run
from appyard.server.security import Principal
from appyard.server.services import file_records as records
from appyard.server.services import files as svc
from appyard.server.services.file_move import SourceGone
from appyard.server.services.file_move import move_file as move_file_on_disk
from appyard.server.services.file_move import move_folder as move_folder_on_disk

router = APIRouter(dependencies=[Depends(authenticated)], tags=["files"])

#: a team path in a query: checked by ``svc.normalize`` (the 422 names ``path``)
PathQuery = Annotated[str, Query(description="Team path, like /exports/result.tar")]


def _files(request: Request, team_id: int, need: Role) -> svc.TeamFiles:
    """The team's files once the caller's role allows ``need`` (404 for another team)."""
    read(request, lambda s, p: svc.authorize(s, p, team_id=team_id, need=need))
    return svc.TeamFiles(context(request).settings.files_dir, team_id)


def _with_ids(request: Request, team_id: int, entries: list[FileInfo]) -> list[FileInfo]:
    """``entries`` (from the disk) with their files' ids; a file met with no row gets one
    (in a second, writing transaction, only then)."""
    files = [e for e in entries if records.indexable(e)]
    if not files:
        return entries

    def attach(rows: dict[str, TeamFile]) -> list[FileInfo] | None:
        if any(e.path not in rows for e in files):
            return None
        return [
            records.with_row(e, rows[e.path]) if not e.is_dir and e.path in rows else e
            for e in entries
        ]

    paths = [e.path for e in files]
    known = read(request, lambda s, p: attach(records.rows_of(s, team_id, paths)))
    if known is not None:
        return known
    made = run(request, lambda s, p: attach(records.ensure_rows(s, team_id, entries)))
    assert made is not None  # every file has its row now
    return made


@router.get("/teams/{team_id}/files", response_model=list[FileInfo])
def list_files(
    request: Request, team_id: PathId, path: PathQuery = "/", recursive: bool = False
) -> list[FileInfo]:
    """A folder's entries; each file with its id."""
    entries = _files(request, team_id, "viewer").listing(svc.normalize(path), recursive)
    return _with_ids(request, team_id, entries)


@router.get("/teams/{team_id}/files/info", response_model=FileInfo)
def file_info(request: Request, team_id: PathId, path: PathQuery) -> FileInfo:
    entry = _files(request, team_id, "viewer").info(svc.normalize(path))
    return _with_ids(request, team_id, [entry])[0]


@router.get("/files/{file_id}", response_model=FileInfo)
def file_by_id(request: Request, file_id: PathId) -> FileInfo:
    """A team file by its id, for the members of its team (anyone else: 404, as for an id
    that never was). The answer is the file on disk now; a file gone meanwhile is a 404."""
    files_dir = context(request).settings.files_dir

    def on_disk(team_id: int, path: str) -> FileInfo | None:
        try:
            entry = svc.TeamFiles(files_dir, team_id).info(path)
        except (NotFoundError, BadRequestError, ConflictError):
            return None  # gone, or a link took its place: no file of the team's there
        return None if entry.is_dir else entry

    def look(s: Session, p: Principal) -> tuple[FileInfo | None, int, str]:
        row = records.find(s, p, file_id)
        entry = on_disk(row.team_id, row.path)
        return (records.with_row(entry, row) if entry else None), row.team_id, row.path

    found, team_id, path = read(request, look)
    if found is not None:
        return found
    run(
        request,
        lambda s, p: records.drop_stale(
            s, file_id=file_id, still_gone=lambda: on_disk(team_id, path) is None
        ),
    )
    raise records.file_missing(file_id)


@router.patch("/files/{file_id}", response_model=FileInfo)
def move_file(request: Request, file_id: PathId, body: FileMove) -> FileInfo:
    """Move (or rename) team file ``file_id`` to ``body.path`` in its team; its id stays.

    A developer of the file's team (a viewer: 403; anyone else: the id's 404). The new path
    must be free (409 on ``path``); folders it needs are made. The file moves on disk first,
    then its row; if the row cannot be written, the file is put back.
    """
    dst = svc.normalize(body.path)
    was = read(request, lambda s, p: records.columns(records.find(s, p, file_id, "developer")))
    team_id, src = int(was["team_id"]), str(was["path"])
    if dst == src:
        return file_by_id(request, file_id)  # already there: answered as it is
    files = svc.TeamFiles(context(request).settings.files_dir, team_id)
    try:
        moved = move_file_on_disk(files, src, dst)
    except SourceGone:
        raise records.file_missing(file_id) from None
    try:
        found = run(
            request,
            lambda s, p: records.move(s, file_id=file_id, team_id=team_id, path=dst, was=was),
        )
    except IntegrityError:
        moved.undo()  # a racing request wrote a row for that path first
        raise ConflictError(
            f"path: {dst!r} was taken while the file was being moved; nothing was moved. "
            "Look at what is there now, then move again.",
            field="path",
        ) from None
    except BaseException:
        moved.undo()
        raise
    return records.with_row(moved.info, found)


def _read(handle: BinaryIO) -> Iterator[bytes]:
    with handle:
        while data := handle.read(svc.WRITE_CHUNK):
            yield data


def _attachment(name: str) -> str:
    quoted = quote(name)
    return (
        f'attachment; filename="{name}"'
        if quoted == name
        else f"attachment; filename*=utf-8''{quoted}"
    )


@router.get(
    "/teams/{team_id}/files/content",
    response_class=StreamingResponse,
    responses={200: {"description": "The bytes", "content": {"application/octet-stream": {}}}},
)
def download(request: Request, team_id: PathId, path: PathQuery) -> StreamingResponse:
    """The file's bytes, from the file opened before answering: a delete racing with the
    download is a 404 if it came first, and does not cut the download if it came after."""
    rel = svc.normalize(path)
    handle, st = _files(request, team_id, "viewer").open_for_download(rel)
    return StreamingResponse(
        _read(handle),
        media_type="application/octet-stream",
        headers={
            "Content-Length": str(st.st_size),
            "Content-Disposition": _attachment(rel.rsplit("/", 1)[-1]),
        },
    )


@router.put("/teams/{team_id}/files/content", response_model=FileInfo)
async def upload(request: Request, team_id: PathId, path: PathQuery) -> FileInfo:
    """The raw body becomes the file, streamed to disk and renamed into place when complete."""
    await aread(request, lambda s, p: svc.authorize(s, p, team_id=team_id, need="developer"))
    rel = svc.normalize(path)
    ctx = context(request)
    length = request.headers.get("content-length", "")
    try:
        got = await svc.receive(
            svc.TeamFiles(ctx.settings.files_dir, team_id),
            rel,
            request.stream(),
            ctx.settings.max_file_bytes,
            declared=int(length) if length.isdigit() else None,
        )
    except ClientDisconnect:
        raise BadRequestError(
            "body: the upload ended before its last byte; nothing was written", field="body"
        ) from None
    # the file is in place; its row (its id, the same as before for a file replaced) next
    return await arun(
        request,
        lambda s, p: records.record_upload(
            s,
            team_id=team_id,
            info=got.info,
            sha256=got.sha256,
            mtime_ns=got.mtime_ns,
            user_id=p.user_id,
        ),
    )


@router.post("/teams/{team_id}/files/folders", response_model=FileInfo, status_code=201)
def make_folder(request: Request, team_id: PathId, body: FolderCreate) -> FileInfo:
    return _files(request, team_id, "developer").mkdir(svc.normalize(body.path))


@router.post("/teams/{team_id}/files/folders/move", response_model=FileInfo)
def move_folder(request: Request, team_id: PathId, body: FolderMove) -> FileInfo:
    """Move (or rename) folder ``body.src`` and all below it to ``body.dst``; the files in it
    keep their ids. A developer of the team. ``dst`` must be free (409 on ``dst``) and
    outside ``src``; folders it needs are made. On disk first, then the rows; if the rows
    cannot be written, the folder is put back."""
    src, dst = svc.normalize(body.src, "src"), svc.normalize(body.dst, "dst")
    files = _files(request, team_id, "developer")
    moved = move_folder_on_disk(files, src, dst)
    try:
        run(request, lambda s, p: records.move_below(s, team_id=team_id, src=src, dst=dst))
    except BaseException:
        moved.undo()
        raise
    return moved.info


@router.delete("/teams/{team_id}/files", status_code=204)
def remove(request: Request, team_id: PathId, path: PathQuery, recursive: bool = False) -> Response:
    """Off the disk first, then the ids of what was removed (a row left by a failure here is
    found stale and dropped by the next ``GET /files/{id}`` of it)."""
    rel = svc.normalize(path)
    _files(request, team_id, "developer").remove(rel, recursive)
    run(request, lambda s, p: records.forget(s, team_id=team_id, path=rel))
    return Response(status_code=204)
