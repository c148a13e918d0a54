"""Team files: a file tree per team, addressed by team-relative paths (docs/data.md)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, BinaryIO
from urllib.parse import quote

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import StreamingResponse
from starlette.requests import ClientDisconnect

from appyard.errors import BadRequestError
from appyard.schemas.accounts import Role
from appyard.schemas.files import FileInfo, FolderCreate
from appyard.server.routes.deps import PathId, aread, authenticated, context, read
from appyard.server.services import files as svc

router = APIRouter(dependencies=[Depends(authenticated)], tags=["files"])

#: a team path in a query: checked by ``svc.normalize`` (the 422 names ``path``)
PathQuery = Annotated[str, Query(description="Team path, like /exports/result.tar")]


def _files(request: Request, team_id: int, need: Role) -> svc.TeamFiles:
    """The team's files once the caller's role allows ``need`` (404 for another team)."""
    read(request, lambda s, p: svc.authorize(s, p, team_id=team_id, need=need))
    return svc.TeamFiles(context(request).settings.files_dir, team_id)


@router.get("/teams/{team_id}/files", response_model=list[FileInfo])
def list_files(
    request: Request, team_id: PathId, path: PathQuery = "/", recursive: bool = False
) -> list[FileInfo]:
    return _files(request, team_id, "viewer").listing(svc.normalize(path), recursive)


@router.get("/teams/{team_id}/files/info", response_model=FileInfo)
def file_info(request: Request, team_id: PathId, path: PathQuery) -> FileInfo:
    return _files(request, team_id, "viewer").info(svc.normalize(path))


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
        return await svc.receive(
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


@router.post("/teams/{team_id}/files/folders", response_model=FileInfo, status_code=201)
def make_folder(request: Request, team_id: PathId, body: FolderCreate) -> FileInfo:
    return _files(request, team_id, "developer").mkdir(svc.normalize(body.path))


@router.delete("/teams/{team_id}/files", status_code=204)
def remove(request: Request, team_id: PathId, path: PathQuery, recursive: bool = False) -> Response:
    _files(request, team_id, "developer").remove(svc.normalize(path), recursive)
    return Response(status_code=204)
