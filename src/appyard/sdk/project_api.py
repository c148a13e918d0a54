"""``api.project``, ``api.dataset``, ``api.image``, ``api.annotation`` (docs/data.md).

Every call returns the server's wire model (``ProjectInfo``, ``ImageInfo``, ...); metas and
annotations travel as JSON dicts in the format of ``appyard.schemas.annotation``. Creating calls
(a project, a dataset, an image upload) are not retried once sent, so a lost answer never makes
a second one; reads and the atomic annotation batches are. Long lists go in batches: annotations
by :data:`~appyard.schemas.projects.ANNOTATION_BATCH` (each batch is written whole or not at
all), image lists page after page.

``progress_cb``, where a call takes one, is called with the number of items just done (an
increment), so ``session.progress_bar(n).update`` fits it as is.
"""

from __future__ import annotations

import logging
import mimetypes
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
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
from appyard.sdk._core import RequestSpec, SyncCore

log = logging.getLogger("appyard")

T = TypeVar("T")
ProgressCallback = Callable[[int], Any]
AnnotationJson = Mapping[str, Any] | Annotation

#: images asked for per page by ``api.image.get_list``
IMAGE_PAGE_SIZE = 500
#: uploads and downloads of image files may take longer than a JSON call
FILE_TIMEOUT_S = 300.0


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


class ProjectApi:
    """Images projects of a workspace, and their meta (classes and tags)."""

    def __init__(self, core: SyncCore) -> None:
        self._core = core

    def create(
        self,
        workspace_id: int,
        name: str,
        description: str = "",
        change_name_if_conflict: bool = False,
    ) -> ProjectInfo:
        """A new images project; a taken name is a ``ConflictError`` unless
        ``change_name_if_conflict`` picks a free one (``name 1``, ``name 2``, ...)."""
        body = {
            "workspace_id": int(workspace_id),
            "name": name,
            "description": description,
            "type": "images",
            "change_name_if_conflict": change_name_if_conflict,
        }
        return ProjectInfo.model_validate(self._core.request("POST", "/projects", json=body))

    def get_info_by_id(self, id: int) -> ProjectInfo:
        """One project; ``NotFoundError`` if there is none (or it is not visible to you)."""
        return ProjectInfo.model_validate(self._core.request("GET", f"/projects/{int(id)}"))

    def get_info_by_name(self, workspace_id: int, name: str) -> ProjectInfo | None:
        """The project of that name in the workspace, or ``None`` if it has none; a workspace
        that is not there (or not yours) is a ``NotFoundError``."""
        try:
            data = self._core.request(
                "GET", "/projects/lookup", params={"workspace_id": int(workspace_id), "name": name}
            )
        except NotFoundError as exc:
            if exc.field == "name":
                return None
            raise  # the workspace itself is not found: not a question of the name
        return ProjectInfo.model_validate(data)

    def get_list(self, workspace_id: int) -> list[ProjectInfo]:
        """The projects of a workspace."""
        data = self._core.request("GET", "/projects", params={"workspace_id": int(workspace_id)})
        return TypeAdapter(list[ProjectInfo]).validate_python(data)

    def get_meta(self, id: int) -> dict[str, Any]:
        """The project meta as JSON (``ProjectMeta.model_validate`` gives the typed model)."""
        return dict(self._core.request("GET", f"/projects/{int(id)}/meta"))

    def update_meta(self, id: int, meta: Mapping[str, Any] | ProjectMeta) -> dict[str, Any]:
        """Replace the meta; the answer is the meta as stored (missing colours filled in).

        Removing a class or tag still in use, or changing a used class's shape, is a
        ``ConflictError`` naming it.
        """
        body = meta.model_dump(mode="json") if isinstance(meta, ProjectMeta) else dict(meta)
        return dict(self._core.request("PUT", f"/projects/{int(id)}/meta", json=body))

    def remove(self, id: int) -> None:
        """Delete the project with its datasets, images and annotations."""
        self._core.request("DELETE", f"/projects/{int(id)}")

    @contextmanager
    def removed_on_failure(self, id: int) -> Iterator[None]:
        """Remove project ``id`` if the block raises (a stop's ``SystemExit`` too): an app that
        builds a project leaves a whole one or none. A failed removal is logged, and the
        block's own error is raised either way."""
        try:
            yield
        except BaseException:
            log.warning("removing the unfinished project %s", id)
            try:
                self.remove(id)
            except AppyardError as exc:
                log.warning("could not remove project %s: %s", id, exc)
            raise


class DatasetApi:
    """Datasets of a project."""

    def __init__(self, core: SyncCore) -> None:
        self._core = core

    def create(
        self,
        project_id: int,
        name: str,
        description: str = "",
        change_name_if_conflict: bool = False,
    ) -> DatasetInfo:
        """A new dataset; a taken name is a ``ConflictError`` unless ``change_name_if_conflict``."""
        body = {
            "project_id": int(project_id),
            "name": name,
            "description": description,
            "change_name_if_conflict": change_name_if_conflict,
        }
        return DatasetInfo.model_validate(self._core.request("POST", "/datasets", json=body))

    def get_list(self, project_id: int) -> list[DatasetInfo]:
        data = self._core.request("GET", "/datasets", params={"project_id": int(project_id)})
        return TypeAdapter(list[DatasetInfo]).validate_python(data)

    def get_info_by_id(self, id: int) -> DatasetInfo:
        return DatasetInfo.model_validate(self._core.request("GET", f"/datasets/{int(id)}"))


class ImageApi:
    """Images of a dataset: upload (streamed as multipart), list, download, remove."""

    def __init__(self, core: SyncCore) -> None:
        self._core = core

    def _upload(self, dataset_id: int, name: str, file: IO[bytes] | bytes) -> ImageInfo:
        mime = mimetypes.guess_type(name)[0] or "application/octet-stream"
        files = {
            "dataset_id": (None, str(int(dataset_id))),
            "name": (None, name),
            "file": (name, file, mime),
        }
        timeout = max(FILE_TIMEOUT_S, self._core.timeout)
        data = self._core.request("POST", "/images", files=files, timeout=timeout)
        return ImageInfo.model_validate(data)

    def upload_path(self, dataset_id: int, name: str, path: str | os.PathLike[str]) -> ImageInfo:
        """Upload a local image file as ``name``; the file is streamed, not read whole."""
        with open(path, "rb") as f:
            return self._upload(dataset_id, name, f)

    def upload_paths(
        self,
        dataset_id: int,
        names: Sequence[str],
        paths: Sequence[str | os.PathLike[str]],
        progress_cb: ProgressCallback | None = None,
    ) -> list[ImageInfo]:
        """Upload several files, in order; ``progress_cb(1)`` after each one."""
        _same_length("upload_paths(names, paths)", names, paths)
        out: list[ImageInfo] = []
        for name, path in zip(names, paths, strict=True):
            out.append(self.upload_path(dataset_id, name, path))
            if progress_cb is not None:
                progress_cb(1)
        return out

    def upload_bytes(self, dataset_id: int, name: str, data: bytes) -> ImageInfo:
        """Upload an image held in memory."""
        return self._upload(dataset_id, name, bytes(data))

    def get_page(
        self, dataset_id: int, limit: int = IMAGE_PAGE_SIZE, cursor: str | None = None
    ) -> Page[ImageInfo]:
        """One page of a dataset's images by id; pass ``next_cursor`` back for the next."""
        data = self._core.request(
            "GET",
            "/images",
            params={"dataset_id": int(dataset_id), "limit": int(limit), "cursor": cursor},
        )
        return Page[ImageInfo].model_validate(data)

    def _iter_list(self, dataset_id: int, page_size: int = IMAGE_PAGE_SIZE) -> Iterator[ImageInfo]:
        """The images of a dataset by id, page after page."""
        cursor: str | None = None
        while True:
            page = self.get_page(dataset_id, page_size, cursor)
            yield from page.items
            if not page.next_cursor or not page.items:
                return
            cursor = page.next_cursor

    def get_list(self, dataset_id: int) -> list[ImageInfo]:
        """All images of a dataset (every page), by id."""
        return list(self._iter_list(dataset_id))

    def get_info_by_id(self, id: int) -> ImageInfo:
        return ImageInfo.model_validate(self._core.request("GET", f"/images/{int(id)}"))

    def download_bytes(self, id: int) -> bytes:
        """The image file as uploaded."""
        spec = RequestSpec("GET", f"/images/{int(id)}/file", timeout=FILE_TIMEOUT_S)
        return self._core.send(spec).content

    def download_path(self, id: int, path: str | os.PathLike[str]) -> None:
        """Stream the image file to ``path`` (parent folders are made; it appears whole or not
        at all, as an ordinary new file)."""
        timeout = max(FILE_TIMEOUT_S, self._core.timeout)
        self._core.download_to(path, f"/images/{int(id)}/file", timeout=timeout)


class AnnotationApi:
    """The annotation of each image, one at a time or in atomic batches."""

    def __init__(self, core: SyncCore) -> None:
        self._core = core

    def _put(self, items: list[dict[str, Any]]) -> list[AnnotationInfo]:
        data = self._core.request("PUT", "/annotations", json={"items": items})
        return TypeAdapter(list[AnnotationInfo]).validate_python(data)

    def upload_json(self, image_id: int, ann: AnnotationJson) -> None:
        """Replace one image's annotation; a bad one is a ``BadRequestError`` naming the field."""
        self._put([{"image_id": int(image_id), "annotation": _annotation_json(ann)}])

    def upload_jsons(
        self,
        image_ids: Sequence[int],
        anns: Sequence[AnnotationJson],
        progress_cb: ProgressCallback | None = None,
    ) -> None:
        """Replace many annotations, in batches of 500; each batch is written whole or not at
        all, and a bad item stops the upload there (earlier batches stay written).
        ``progress_cb(len(batch))`` after each batch."""
        _same_length("upload_jsons(image_ids, anns)", image_ids, anns)
        items = [
            {"image_id": int(i), "annotation": _annotation_json(a)}
            for i, a in zip(image_ids, anns, strict=True)
        ]
        for batch in _chunks(items, ANNOTATION_BATCH):
            self._put(list(batch))
            if progress_cb is not None:
                progress_cb(len(batch))

    def _download_info(self, image_id: int) -> AnnotationInfo:
        data = self._core.request("GET", f"/images/{int(image_id)}/annotation")
        return AnnotationInfo.model_validate(data)

    def download_json(self, image_id: int) -> dict[str, Any]:
        """One image's annotation as JSON."""
        return self._download_info(image_id).annotation

    def download_jsons(
        self, image_ids: Sequence[int], progress_cb: ProgressCallback | None = None
    ) -> list[dict[str, Any]]:
        """Annotations of many images, in the order asked (batches of 500)."""
        out: list[dict[str, Any]] = []
        ids = [int(i) for i in image_ids]
        for batch in _chunks(ids, ANNOTATION_BATCH):
            data = self._core.request(
                "POST", "/annotations/download", json={"image_ids": list(batch)}, idempotent=True
            )
            infos = TypeAdapter(list[AnnotationInfo]).validate_python(data)
            out.extend(info.annotation for info in infos)
            if progress_cb is not None:
                progress_cb(len(batch))
        return out
