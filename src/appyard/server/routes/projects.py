"""Images projects, datasets, images and annotations (docs/data.md)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Query, Request, Response, UploadFile
from fastapi.responses import FileResponse
from fastapi.routing import APIRoute
from starlette.requests import ClientDisconnect
from starlette.types import Message

from appyard.errors import BadRequestError, NotFoundError
from appyard.schemas.annotation import ProjectMeta
from appyard.schemas.common import MAX_ID, Page
from appyard.schemas.projects import (
    AnnotationIds,
    AnnotationInfo,
    AnnotationUpload,
    DatasetCreate,
    DatasetInfo,
    ImageInfo,
    ProjectCreate,
    ProjectInfo,
)
from appyard.server.routes.deps import (
    PathId,
    QueryId,
    authenticated,
    bearer,
    context,
    read,
    run,
)
from appyard.server.services import annotations as annotation_svc
from appyard.server.services import datasets as dataset_svc
from appyard.server.services import images as image_svc
from appyard.server.services import projects as project_svc
from appyard.server.services.names import NAME_MAX, NAME_PATTERN
from appyard.server.storage import ImageStore

log = logging.getLogger(__name__)

router = APIRouter(dependencies=[Depends(authenticated)], tags=["projects"])

ImageName = Annotated[str, Form(min_length=1, max_length=NAME_MAX, pattern=NAME_PATTERN)]


def _store(request: Request) -> ImageStore:
    return ImageStore(context(request).settings.images_dir)


def _collect(request: Request, shas: list[str]) -> None:
    """Remove the files no image names any longer (after the commit that dropped them)."""
    db = context(request).db

    def still_used(batch: list[str]) -> set[str]:
        with db.reader() as s:
            return image_svc.referenced(s, batch)

    _store(request).collect(shas, still_used)


# -- projects -----------------------------------------------------------------------------------


@router.post("/projects", response_model=ProjectInfo, status_code=201)
def create_project(request: Request, body: ProjectCreate) -> ProjectInfo:
    return run(request, lambda s, p: project_svc.create_project(s, p, body=body))


@router.get("/projects", response_model=list[ProjectInfo])
def list_projects(request: Request, workspace_id: QueryId) -> list[ProjectInfo]:
    return read(request, lambda s, p: project_svc.list_projects(s, p, workspace_id=workspace_id))


@router.get("/projects/lookup", response_model=ProjectInfo)
def lookup_project(
    request: Request, workspace_id: QueryId, name: str = Query(min_length=1, max_length=200)
) -> ProjectInfo:
    return read(
        request, lambda s, p: project_svc.lookup_project(s, p, workspace_id=workspace_id, name=name)
    )


@router.get("/projects/{project_id}", response_model=ProjectInfo)
def get_project(request: Request, project_id: PathId) -> ProjectInfo:
    return read(request, lambda s, p: project_svc.project_by_id(s, p, project_id=project_id))


@router.delete("/projects/{project_id}", status_code=204)
def delete_project(request: Request, project_id: PathId) -> Response:
    shas = run(request, lambda s, p: project_svc.delete_project(s, p, project_id=project_id))
    _collect(request, shas)
    return Response(status_code=204)


@router.get("/projects/{project_id}/meta", response_model=ProjectMeta)
def get_meta(request: Request, project_id: PathId) -> ProjectMeta:
    return read(request, lambda s, p: project_svc.get_meta(s, p, project_id=project_id))


@router.put("/projects/{project_id}/meta", response_model=ProjectMeta)
def update_meta(request: Request, project_id: PathId, body: ProjectMeta) -> ProjectMeta:
    return run(
        request, lambda s, p: project_svc.update_meta(s, p, project_id=project_id, meta=body)
    )


# -- datasets -----------------------------------------------------------------------------------


@router.post("/datasets", response_model=DatasetInfo, status_code=201)
def create_dataset(request: Request, body: DatasetCreate) -> DatasetInfo:
    return run(request, lambda s, p: dataset_svc.create_dataset(s, p, body=body))


@router.get("/datasets", response_model=list[DatasetInfo])
def list_datasets(request: Request, project_id: QueryId) -> list[DatasetInfo]:
    return read(request, lambda s, p: dataset_svc.list_datasets(s, p, project_id=project_id))


@router.get("/datasets/{dataset_id}", response_model=DatasetInfo)
def get_dataset(request: Request, dataset_id: PathId) -> DatasetInfo:
    return read(request, lambda s, p: dataset_svc.dataset_by_id(s, p, dataset_id=dataset_id))


# -- images -------------------------------------------------------------------------------------


@router.post("/images", response_model=ImageInfo, status_code=201)
def upload_image(
    request: Request,
    dataset_id: Annotated[int, Form(ge=1, le=MAX_ID)],
    name: ImageName,
    file: UploadFile,
    change_name_if_conflict: Annotated[bool, Form()] = False,
) -> ImageInfo:
    """Store the file (content-addressed), then its record; a file that is not an image is a
    422 on ``file``, checked after the caller's right to write to the dataset. A record that
    fails (a name taken meanwhile, the dataset removed) leaves no file behind."""
    data = file.file.read(image_svc.MAX_IMAGE_BYTES + 1)
    probed: image_svc.ImageFile | None = None
    problem: BadRequestError | None = None
    try:
        probed = image_svc.probe_image(data)
    except BadRequestError as exc:
        problem = exc
    read(
        request,
        lambda s, p: image_svc.check_upload(
            s,
            p,
            dataset_id=dataset_id,
            name=name,
            change_name_if_conflict=change_name_if_conflict,
            problem=problem,
        ),
    )
    assert probed is not None
    image = probed
    store = _store(request)
    store.put(image.sha256, data)
    try:
        info = run(
            request,
            lambda s, p: image_svc.add_image(
                s,
                p,
                dataset_id=dataset_id,
                name=name,
                file=image,
                change_name_if_conflict=change_name_if_conflict,
            ),
        )
    except BaseException:
        # no record names the file (a name taken meanwhile, the dataset removed, ...): remove
        # it unless another image uses these bytes; ``collect`` is safe against a concurrent
        # upload of the same bytes (that upload puts the file again after its commit)
        try:
            _collect(request, [image.sha256])
        except Exception:
            log.exception("could not collect the file %s of a failed upload", image.sha256)
        raise
    # a deletion of the last other image with these bytes may have taken the file meanwhile;
    # and if this image was removed since its commit, its file goes again
    store.put(image.sha256, data)
    try:
        _collect(request, [image.sha256])
    except Exception:  # the upload is done; a file left over is only disk space
        log.exception("could not collect the file %s after an upload", image.sha256)
    return info


@router.get("/images", response_model=Page[ImageInfo])
def list_images(
    request: Request,
    dataset_id: QueryId,
    limit: int = Query(default=100, ge=1, le=1000),
    cursor: QueryId | None = None,
) -> Page[ImageInfo]:
    return read(
        request,
        lambda s, p: image_svc.list_images(s, p, dataset_id=dataset_id, limit=limit, cursor=cursor),
    )


@router.get("/images/{image_id}", response_model=ImageInfo)
def get_image(request: Request, image_id: PathId) -> ImageInfo:
    return read(request, lambda s, p: image_svc.image_by_id(s, p, image_id=image_id))


@router.get(
    "/images/{image_id}/file",
    response_class=FileResponse,
    responses={200: {"description": "The bytes", "content": {"image/*": {}}}},
)
def download_image(request: Request, image_id: PathId) -> FileResponse:
    info = read(request, lambda s, p: image_svc.image_by_id(s, p, image_id=image_id))
    path = _store(request).path(info.sha256)
    if not path.exists():
        raise NotFoundError(
            f"The file of image {image_id} is missing from the server's storage; "
            "upload the image again.",
            field="image_id",
        )
    return FileResponse(
        path, media_type=info.mime, filename=info.name, content_disposition_type="inline"
    )


@router.delete("/images/{image_id}", status_code=204)
def delete_image(request: Request, image_id: PathId) -> Response:
    shas = run(request, lambda s, p: image_svc.delete_image(s, p, image_id=image_id))
    _collect(request, shas)
    return Response(status_code=204)


@router.get("/images/{image_id}/annotation", response_model=AnnotationInfo)
def get_annotation(request: Request, image_id: PathId) -> AnnotationInfo:
    return read(request, lambda s, p: annotation_svc.get_annotation(s, p, image_id=image_id))


# -- annotations --------------------------------------------------------------------------------


class _CappedBody(APIRoute):
    """A route whose body may be at most ``annotation_svc.MAX_ANNOTATIONS_BODY`` bytes: a larger
    one is a 413 on ``body`` before it is parsed (FastAPI reads and parses a body before the
    route and its dependencies run). A declared ``Content-Length`` over the cap is refused
    unread; a body without one is counted as it comes."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        limit = annotation_svc.MAX_ANNOTATIONS_BODY

        async def capped(request: Request) -> Response:
            bearer(request)  # no token: a 401 before the body is read
            length = request.headers.get("content-length", "")
            if length.isdigit() and int(length) > limit:
                raise annotation_svc.annotations_too_large()
            chunks: list[bytes] = []
            size = 0
            try:
                async for chunk in request.stream():
                    size += len(chunk)
                    if size > limit:
                        raise annotation_svc.annotations_too_large()
                    chunks.append(chunk)
            except ClientDisconnect:
                raise BadRequestError(
                    "body: the request ended before its last byte", field="body"
                ) from None
            body = b"".join(chunks)
            sent = False

            async def replay() -> Message:
                nonlocal sent
                if not sent:
                    sent = True
                    return {"type": "http.request", "body": body, "more_body": False}
                return await request.receive()

            return await handler(Request(request.scope, replay))

        return capped


def upload_annotations(request: Request, body: AnnotationUpload) -> list[AnnotationInfo]:
    """Read the batch's images and metas (a read transaction), check it in no transaction
    (decoding bitmaps takes time: no lock is held, no connection taken), then write it in a
    short write transaction that looks again at what the check relied on."""
    targets = read(request, lambda s, p: annotation_svc.annotation_targets(s, p, body=body))
    checked = annotation_svc.check_annotations(targets)
    return run(request, lambda s, p: annotation_svc.write_annotations(s, p, batch=checked))


router.add_api_route(
    "/annotations",
    upload_annotations,
    methods=["PUT"],
    response_model=list[AnnotationInfo],
    route_class_override=_CappedBody,
)


@router.post("/annotations/download", response_model=list[AnnotationInfo])
def download_annotations(request: Request, body: AnnotationIds) -> list[AnnotationInfo]:
    return read(request, lambda s, p: annotation_svc.download_annotations(s, p, body=body))
