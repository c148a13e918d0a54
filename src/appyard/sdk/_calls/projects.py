"""The calls of ``api.project``, ``api.dataset``, ``api.image``, ``api.annotation``."""

from __future__ import annotations

import logging
import mimetypes
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import IO, Any, TypeVar

from pydantic import TypeAdapter

from appyard.errors import AppyardError, InvalidArgumentsError, NotFoundError
from appyard.schemas.annotation import Annotation, ProjectMeta
from appyard.schemas.common import Page
from appyard.schemas.projects import (
    ANNOTATION_BATCH,
    AnnotationInfo,
    DatasetInfo,
    ImageInfo,
    ProjectInfo,
)
from appyard.sdk._calls.effects import Fetch, Op, collect, download, pages, request
from appyard.sdk._core import Params, RequestSpec

log = logging.getLogger("appyard")

T = TypeVar("T")
ProgressCallback = Callable[[int], Any]
AnnotationJson = Mapping[str, Any] | Annotation

#: images asked for per page by ``api.image.get_list``
IMAGE_PAGE_SIZE = 500
#: uploads and downloads of image files may take longer than a JSON call
FILE_TIMEOUT_S = 300.0

_PROJECTS = TypeAdapter(list[ProjectInfo])
_DATASETS = TypeAdapter(list[DatasetInfo])
_ANNOTATIONS = TypeAdapter(list[AnnotationInfo])


def _chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _same_length(what: str, a: Sequence[Any], b: Sequence[Any]) -> None:
    if len(a) != len(b):
        raise InvalidArgumentsError(
            f"{what}: got {len(a)} and {len(b)} items; the two lists must be of the same length"
        )


def _annotation_json(ann: AnnotationJson) -> dict[str, Any]:
    """What goes on the wire; a dict is sent as given (the server checks it and names the field)."""
    if isinstance(ann, Annotation):
        return ann.to_json()
    if not isinstance(ann, Mapping):
        raise InvalidArgumentsError(
            f"an annotation must be a dict (or an Annotation), not {type(ann).__name__}"
        )
    return dict(ann)


def _report(progress_cb: ProgressCallback | None, done: int) -> None:
    if progress_cb is not None:
        progress_cb(done)


# -- projects ----------------------------------------------------------------------------------


def create_project(
    workspace_id: int, name: str, description: str, change_name_if_conflict: bool
) -> Op[ProjectInfo]:
    body = {
        "workspace_id": int(workspace_id),
        "name": name,
        "description": description,
        "type": "images",
        "change_name_if_conflict": change_name_if_conflict,
    }
    return ProjectInfo.model_validate((yield from request("POST", "/projects", json=body)))


def project(id: int) -> Op[ProjectInfo]:
    return ProjectInfo.model_validate((yield from request("GET", f"/projects/{int(id)}")))


def project_by_name(workspace_id: int, name: str) -> Op[ProjectInfo | None]:
    params: Params = {"workspace_id": int(workspace_id), "name": name}
    try:
        data = yield from request("GET", "/projects/lookup", params=params)
    except NotFoundError as exc:
        if exc.field == "name":
            return None
        raise  # the workspace itself is not found: not a question of the name
    return ProjectInfo.model_validate(data)


def projects(workspace_id: int) -> Op[list[ProjectInfo]]:
    params = {"workspace_id": int(workspace_id)}
    return _PROJECTS.validate_python((yield from request("GET", "/projects", params=params)))


def get_meta(id: int) -> Op[dict[str, Any]]:
    return dict((yield from request("GET", f"/projects/{int(id)}/meta")))


def update_meta(id: int, meta: Mapping[str, Any] | ProjectMeta) -> Op[dict[str, Any]]:
    body = meta.model_dump(mode="json") if isinstance(meta, ProjectMeta) else dict(meta)
    return dict((yield from request("PUT", f"/projects/{int(id)}/meta", json=body)))


def remove_project(id: int) -> Op[None]:
    yield from request("DELETE", f"/projects/{int(id)}")


def remove_unfinished(id: int) -> Op[None]:
    """What ``removed_on_failure`` does when its block raised: a failed removal is logged, so
    that the block's own error is the one raised."""
    log.warning("removing the unfinished project %s", id)
    try:
        yield from remove_project(id)
    except AppyardError as exc:
        log.warning("could not remove project %s: %s", id, exc)


# -- datasets ----------------------------------------------------------------------------------


def create_dataset(
    project_id: int, name: str, description: str, change_name_if_conflict: bool
) -> Op[DatasetInfo]:
    body = {
        "project_id": int(project_id),
        "name": name,
        "description": description,
        "change_name_if_conflict": change_name_if_conflict,
    }
    return DatasetInfo.model_validate((yield from request("POST", "/datasets", json=body)))


def datasets(project_id: int) -> Op[list[DatasetInfo]]:
    params = {"project_id": int(project_id)}
    return _DATASETS.validate_python((yield from request("GET", "/datasets", params=params)))


def dataset(id: int) -> Op[DatasetInfo]:
    return DatasetInfo.model_validate((yield from request("GET", f"/datasets/{int(id)}")))


# -- images ------------------------------------------------------------------------------------


def upload_image(dataset_id: int, name: str, file: IO[bytes] | bytes) -> Op[ImageInfo]:
    mime = mimetypes.guess_type(name)[0] or "application/octet-stream"
    files = {
        "dataset_id": (None, str(int(dataset_id))),
        "name": (None, name),
        "file": (name, file, mime),
    }
    data = yield from request("POST", "/images", files=files, min_timeout=FILE_TIMEOUT_S)
    return ImageInfo.model_validate(data)


def upload_path(dataset_id: int, name: str, path: str | os.PathLike[str]) -> Op[ImageInfo]:
    with open(path, "rb") as f:
        return (yield from upload_image(dataset_id, name, f))


def upload_paths(
    dataset_id: int,
    names: Sequence[str],
    paths: Sequence[str | os.PathLike[str]],
    progress_cb: ProgressCallback | None,
) -> Op[list[ImageInfo]]:
    _same_length("upload_paths(names, paths)", names, paths)
    out: list[ImageInfo] = []
    for name, path in zip(names, paths, strict=True):
        out.append((yield from upload_path(dataset_id, name, path)))
        _report(progress_cb, 1)
    return out


def image_page(dataset_id: int, limit: int, cursor: str | None) -> Op[Page[ImageInfo]]:
    params = {"dataset_id": int(dataset_id), "limit": int(limit), "cursor": cursor}
    return Page[ImageInfo].model_validate((yield from request("GET", "/images", params=params)))


def images(dataset_id: int) -> Op[list[ImageInfo]]:
    return collect(pages(lambda cursor: image_page(dataset_id, IMAGE_PAGE_SIZE, cursor)))


def image(id: int) -> Op[ImageInfo]:
    return ImageInfo.model_validate((yield from request("GET", f"/images/{int(id)}")))


def download_image_bytes(id: int) -> Op[bytes]:
    content: bytes = yield Fetch(
        RequestSpec("GET", f"/images/{int(id)}/file", timeout=FILE_TIMEOUT_S)
    )
    return content


def download_image(id: int, path: str | os.PathLike[str]) -> Op[None]:
    return download(path, f"/images/{int(id)}/file", min_timeout=FILE_TIMEOUT_S)


# -- annotations -------------------------------------------------------------------------------


def _put_annotations(items: list[dict[str, Any]]) -> Op[list[AnnotationInfo]]:
    data = yield from request("PUT", "/annotations", json={"items": items})
    return _ANNOTATIONS.validate_python(data)


def upload_json(image_id: int, ann: AnnotationJson) -> Op[None]:
    yield from _put_annotations([{"image_id": int(image_id), "annotation": _annotation_json(ann)}])


def upload_jsons(
    image_ids: Sequence[int],
    anns: Sequence[AnnotationJson],
    progress_cb: ProgressCallback | None,
) -> Op[None]:
    _same_length("upload_jsons(image_ids, anns)", image_ids, anns)
    items = [
        {"image_id": int(i), "annotation": _annotation_json(a)}
        for i, a in zip(image_ids, anns, strict=True)
    ]
    for batch in _chunks(items, ANNOTATION_BATCH):
        yield from _put_annotations(list(batch))
        _report(progress_cb, len(batch))


def download_json(image_id: int) -> Op[dict[str, Any]]:
    data = yield from request("GET", f"/images/{int(image_id)}/annotation")
    return AnnotationInfo.model_validate(data).annotation


def download_jsons(
    image_ids: Sequence[int], progress_cb: ProgressCallback | None
) -> Op[list[dict[str, Any]]]:
    out: list[dict[str, Any]] = []
    ids = [int(i) for i in image_ids]
    for batch in _chunks(ids, ANNOTATION_BATCH):
        data = yield from request(
            "POST", "/annotations/download", json={"image_ids": list(batch)}, idempotent=True
        )
        out.extend(info.annotation for info in _ANNOTATIONS.validate_python(data))
        _report(progress_cb, len(batch))
    return out
