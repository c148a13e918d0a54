"""``api.image``, ``api.annotation``: the images of a dataset and their annotations
(docs/data.md; the rules they share with projects are in ``project_api``).

Each resource has an async twin over the same calls (``_calls.projects``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from appyard.schemas.common import Page
from appyard.schemas.projects import ImageInfo
from appyard.sdk._async import AsyncCore
from appyard.sdk._calls import projects as calls
from appyard.sdk._calls.effects import twin_of
from appyard.sdk._calls.projects import (
    FILE_TIMEOUT_S,
    IMAGE_PAGE_SIZE,
    AnnotationJson,
    ProgressCallback,
)
from appyard.sdk._sync import SyncCore

__all__ = [
    "FILE_TIMEOUT_S",
    "IMAGE_PAGE_SIZE",
    "AnnotationApi",
    "AnnotationJson",
    "AsyncAnnotationApi",
    "AsyncImageApi",
    "ImageApi",
    "ProgressCallback",
]

LocalPath = str | os.PathLike[str]


class ImageApi:
    """Images of a dataset: upload (streamed as multipart), list, download, remove."""

    def __init__(self, core: SyncCore) -> None:
        self._core = core

    def upload_path(self, dataset_id: int, name: str, path: LocalPath) -> ImageInfo:
        """Upload a local image file as ``name``; the file is streamed, not read whole."""
        return self._core.run(calls.upload_path(dataset_id, name, path))

    def upload_paths(
        self,
        dataset_id: int,
        names: Sequence[str],
        paths: Sequence[LocalPath],
        progress_cb: ProgressCallback | None = None,
    ) -> list[ImageInfo]:
        """Upload several files, in order; ``progress_cb(1)`` after each one."""
        return self._core.run(calls.upload_paths(dataset_id, names, paths, progress_cb))

    def upload_bytes(self, dataset_id: int, name: str, data: bytes) -> ImageInfo:
        """Upload an image held in memory."""
        return self._core.run(calls.upload_image(dataset_id, name, bytes(data)))

    def get_page(
        self, dataset_id: int, limit: int = IMAGE_PAGE_SIZE, cursor: str | None = None
    ) -> Page[ImageInfo]:
        """One page of a dataset's images by id; pass ``next_cursor`` back for the next."""
        return self._core.run(calls.image_page(dataset_id, limit, cursor))

    def get_list(self, dataset_id: int) -> list[ImageInfo]:
        """All images of a dataset (every page), by id."""
        return self._core.run(calls.images(dataset_id))

    def get_info_by_id(self, id: int) -> ImageInfo:
        """One image; ``NotFoundError`` if there is none (or it is not visible to you)."""
        return self._core.run(calls.image(id))

    def download_bytes(self, id: int) -> bytes:
        """The image file as uploaded."""
        return self._core.run(calls.download_image_bytes(id))

    def download_path(self, id: int, path: LocalPath) -> None:
        """Stream the image file to ``path`` (parent folders are made; it appears whole or not
        at all, as an ordinary new file)."""
        self._core.run(calls.download_image(id, path))


@twin_of(ImageApi)
class AsyncImageApi:
    def __init__(self, core: AsyncCore) -> None:
        self._core = core

    async def upload_path(self, dataset_id: int, name: str, path: LocalPath) -> ImageInfo:
        return await self._core.run(calls.upload_path(dataset_id, name, path))

    async def upload_paths(
        self,
        dataset_id: int,
        names: Sequence[str],
        paths: Sequence[LocalPath],
        progress_cb: ProgressCallback | None = None,
    ) -> list[ImageInfo]:
        return await self._core.run(calls.upload_paths(dataset_id, names, paths, progress_cb))

    async def upload_bytes(self, dataset_id: int, name: str, data: bytes) -> ImageInfo:
        return await self._core.run(calls.upload_image(dataset_id, name, bytes(data)))

    async def get_page(
        self, dataset_id: int, limit: int = IMAGE_PAGE_SIZE, cursor: str | None = None
    ) -> Page[ImageInfo]:
        return await self._core.run(calls.image_page(dataset_id, limit, cursor))

    async def get_list(self, dataset_id: int) -> list[ImageInfo]:
        return await self._core.run(calls.images(dataset_id))

    async def get_info_by_id(self, id: int) -> ImageInfo:
        return await self._core.run(calls.image(id))

    async def download_bytes(self, id: int) -> bytes:
        return await self._core.run(calls.download_image_bytes(id))

    async def download_path(self, id: int, path: LocalPath) -> None:
        await self._core.run(calls.download_image(id, path))


class AnnotationApi:
    """The annotation of each image, one at a time or in atomic batches."""

    def __init__(self, core: SyncCore) -> None:
        self._core = core

    def upload_json(self, image_id: int, ann: AnnotationJson) -> None:
        """Replace one image's annotation; a bad one is a ``BadRequestError`` naming the field."""
        self._core.run(calls.upload_json(image_id, ann))

    def upload_jsons(
        self,
        image_ids: Sequence[int],
        anns: Sequence[AnnotationJson],
        progress_cb: ProgressCallback | None = None,
    ) -> None:
        """Replace many annotations, in batches of 500; each batch is written whole or not at
        all, and a bad item stops the upload there (earlier batches stay written).
        ``progress_cb(len(batch))`` after each batch."""
        self._core.run(calls.upload_jsons(image_ids, anns, progress_cb))

    def download_json(self, image_id: int) -> dict[str, Any]:
        """One image's annotation as JSON."""
        return self._core.run(calls.download_json(image_id))

    def download_jsons(
        self, image_ids: Sequence[int], progress_cb: ProgressCallback | None = None
    ) -> list[dict[str, Any]]:
        """Annotations of many images, in the order asked (batches of 500)."""
        return self._core.run(calls.download_jsons(image_ids, progress_cb))


@twin_of(AnnotationApi)
class AsyncAnnotationApi:
    def __init__(self, core: AsyncCore) -> None:
        self._core = core

    async def upload_json(self, image_id: int, ann: AnnotationJson) -> None:
        await self._core.run(calls.upload_json(image_id, ann))

    async def upload_jsons(
        self,
        image_ids: Sequence[int],
        anns: Sequence[AnnotationJson],
        progress_cb: ProgressCallback | None = None,
    ) -> None:
        await self._core.run(calls.upload_jsons(image_ids, anns, progress_cb))

    async def download_json(self, image_id: int) -> dict[str, Any]:
        return await self._core.run(calls.download_json(image_id))

    async def download_jsons(
        self, image_ids: Sequence[int], progress_cb: ProgressCallback | None = None
    ) -> list[dict[str, Any]]:
        return await self._core.run(calls.download_jsons(image_ids, progress_cb))
