"""The catalog: publish, look up, read modules; download release archives."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, UploadFile
from fastapi import Path as PathParam
from fastapi.responses import FileResponse

from appyard.errors import BadRequestError, NotFoundError
from appyard.schemas.ecosystem import ModuleInfoWire, PublishResult
from appyard.server.routes.deps import PathId, authenticated, context, read, run
from appyard.server.services import ecosystem as svc

router = APIRouter(dependencies=[Depends(authenticated)], tags=["ecosystem"])


@router.post("/modules", response_model=PublishResult, status_code=201)
def publish(request: Request, archive: UploadFile) -> PublishResult:
    ctx = context(request)
    limit = ctx.settings.max_release_bytes
    data = archive.file.read(limit + 1)
    if len(data) > limit:
        raise BadRequestError(
            f"archive is larger than {limit // (1024 * 1024)} MiB", field="archive"
        )
    return run(request, lambda s, p: svc.publish(s, p, data=data, store=ctx.releases))


@router.get("/modules", response_model=list[ModuleInfoWire])
def list_modules(request: Request, q: str | None = None) -> list[ModuleInfoWire]:
    return read(request, lambda s, p: svc.list_modules(s, p, q=q))


@router.get("/modules/lookup")
def lookup(request: Request, slug: str = Query(min_length=1, max_length=200)) -> dict[str, int]:
    return {"id": read(request, lambda s, p: svc.lookup(s, p, slug=slug))}


@router.get("/modules/{module_id}", response_model=ModuleInfoWire)
def module_info(request: Request, module_id: PathId, version: str | None = None) -> ModuleInfoWire:
    return read(request, lambda s, p: svc.module_info(s, p, module_id=module_id, version=version))


@router.get("/releases/{sha256}/archive")
def download(
    request: Request, sha256: Annotated[str, PathParam(pattern="^[0-9a-f]{64}$")]
) -> FileResponse:
    read(request, lambda s, p: svc.release_for_download(s, p, sha256=sha256))
    path = context(request).releases.path(sha256)
    if not path.exists():
        raise NotFoundError(
            f"The archive of release {sha256} is missing from the server's storage; publish it again.",
            field="sha256",
        )
    return FileResponse(path, media_type="application/gzip", filename=f"{sha256}.tar.gz")
