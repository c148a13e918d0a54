"""Images of datasets: upload (probed with Pillow), lists, removal (docs/data.md).

A viewer of the dataset's team reads; a developer (or admin) uploads and removes. An upload is
checked before its file is stored (``check_upload``: the caller may write to the dataset, the
file is an image, the name is free), and recorded after (``add_image``), with an empty
annotation of the image's real size. Files are content-addressed: a removal returns the sha256
of the file, which the route collects once no image names it (``referenced``).
"""

from __future__ import annotations

import hashlib
import io
import warnings
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from appyard.errors import BadRequestError, ConflictError
from appyard.schemas.annotation import Annotation
from appyard.schemas.common import Page
from appyard.schemas.projects import ImageInfo
from appyard.server.db.models import Dataset, Image
from appyard.server.security import Principal
from appyard.server.services.access import dataset_missing, get_dataset, get_image
from appyard.server.services.annotations import summary
from appyard.server.services.names import insert_named
from appyard.server.services.paging import keyset_page

#: the largest image file an upload may carry
MAX_IMAGE_BYTES = 64 * 1024 * 1024
#: largest width or height (the annotation format's limit)
MAX_SIDE = 100_000
#: Pillow's format name -> the MIME type stored (MPO is the JPEG many cameras write)
FORMATS: dict[str, str] = {
    "JPEG": "image/jpeg",
    "MPO": "image/jpeg",
    "PNG": "image/png",
    "BMP": "image/bmp",
    "GIF": "image/gif",
    "TIFF": "image/tiff",
    "WEBP": "image/webp",
}


@dataclass(frozen=True)
class ImageFile:
    """What an upload's bytes are, found by Pillow."""

    sha256: str
    mime: str
    size: int
    width: int
    height: int


def probe_image(data: bytes) -> ImageFile:
    """Check that ``data`` is an image of an accepted format and measure it; else a 422 on
    ``file``. Pillow checks the file's structure, then opens it again for its size."""
    from PIL import Image as PILImage
    from PIL import UnidentifiedImageError

    accepted = "JPEG, PNG, BMP, GIF, TIFF or WEBP"
    if len(data) > MAX_IMAGE_BYTES:
        raise BadRequestError(
            f"file: the file is larger than {MAX_IMAGE_BYTES // (1024 * 1024)} MiB; "
            "resize or split it first.",
            field="file",
        )
    if not data:
        raise BadRequestError(f"file: the file is empty; send a {accepted} image.", field="file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PILImage.DecompressionBombWarning)
            with PILImage.open(io.BytesIO(data)) as img:
                fmt = img.format or ""
                img.verify()
            with PILImage.open(io.BytesIO(data)) as img:
                width, height = img.size
    except PILImage.DecompressionBombError as exc:
        raise BadRequestError(
            f"file: the image has too many pixels to be handled safely ({exc}).", field="file"
        ) from None
    except Exception as exc:  # Pillow's decoders raise many kinds on a damaged file
        reason = (
            "it is not in an image format"
            if isinstance(exc, UnidentifiedImageError)
            else f"it is damaged ({type(exc).__name__}: {exc})"
        )
        raise BadRequestError(
            f"file: the file is not an image that can be read: {reason}; send a {accepted} image.",
            field="file",
        ) from None
    mime = FORMATS.get(fmt)
    if mime is None:
        raise BadRequestError(
            f"file: the file is a {fmt} image; send a {accepted} image.", field="file"
        )
    if not (1 <= width <= MAX_SIDE and 1 <= height <= MAX_SIDE):
        raise BadRequestError(
            f"file: the image is {width}x{height}; width and height must be within 1..{MAX_SIDE}.",
            field="file",
        )
    return ImageFile(
        sha256=hashlib.sha256(data).hexdigest(),
        mime=mime,
        size=len(data),
        width=width,
        height=height,
    )


def image_info(im: Image) -> ImageInfo:
    return ImageInfo(
        id=im.id,
        name=im.name,
        dataset_id=im.dataset_id,
        project_id=im.project_id,
        team_id=im.team_id,
        width=im.width,
        height=im.height,
        size=im.size,
        mime=im.mime,
        sha256=im.sha256,
        tags=list(im.tags or []),
        objects_count=im.objects_count,
        created_at=im.created_at,
        updated_at=im.updated_at,
    )


def _image_name_taken(dataset_id: int, name: str) -> ConflictError:
    return ConflictError(
        f"Dataset {dataset_id} has an image named {name!r} already; pick another name, "
        "or send change_name_if_conflict=true to get a free one.",
        field="name",
    )


def check_upload(
    s: Session,
    p: Principal,
    *,
    dataset_id: int,
    name: str,
    change_name_if_conflict: bool,
    problem: BadRequestError | None,
) -> None:
    """Before an upload's file is stored: the caller may write to the dataset, the file is an
    image (``problem`` is what ``probe_image`` found wrong, if anything), the name is free."""
    dataset, _ = get_dataset(s, p, dataset_id, "developer")
    if problem is not None:
        raise problem
    if not change_name_if_conflict and s.scalar(
        select(Image.id).where(Image.dataset_id == dataset.id, Image.name == name)
    ):
        raise _image_name_taken(dataset.id, name)


def add_image(
    s: Session,
    p: Principal,
    *,
    dataset_id: int,
    name: str,
    file: ImageFile,
    change_name_if_conflict: bool = False,
) -> ImageInfo:
    """The record of an uploaded image (its file is stored already), with an empty
    annotation of its real size."""
    dataset, project = get_dataset(s, p, dataset_id, "developer", lock=True)
    empty = Annotation.empty(file.width, file.height)
    image = insert_named(
        s,
        lambda chosen: Image(
            dataset_id=dataset.id,
            project_id=project.id,
            team_id=project.team_id,
            name=chosen,
            sha256=file.sha256,
            mime=file.mime,
            size=file.size,
            width=file.width,
            height=file.height,
            annotation=empty.to_json(),
            **summary(empty),
        ),
        Image.name,
        Image.dataset_id == dataset.id,
        name,
        change_name_if_conflict,
        lambda taken: _image_name_taken(dataset.id, taken),
        lambda: (
            dataset_missing(dataset.id)
            if s.get(Dataset, dataset.id, populate_existing=True) is None
            else None
        ),
        keep_extension=True,
    )
    return image_info(image)


def list_images(
    s: Session, p: Principal, *, dataset_id: int, limit: int = 100, cursor: int | None = None
) -> Page[ImageInfo]:
    """A page of the dataset's images by id; ``next_cursor`` is the last id of this page."""
    dataset, _ = get_dataset(s, p, dataset_id)
    stmt = select(Image).where(Image.dataset_id == dataset.id)
    if cursor is not None:
        stmt = stmt.where(Image.id > cursor)
    return keyset_page(list(s.scalars(stmt.order_by(Image.id).limit(limit + 1))), limit, image_info)


def image_by_id(s: Session, p: Principal, *, image_id: int) -> ImageInfo:
    return image_info(get_image(s, p, image_id))


def delete_image(s: Session, p: Principal, *, image_id: int) -> list[str]:
    """Remove the image; returns its file's sha256 (collected after the commit if unused)."""
    image = get_image(s, p, image_id, "developer")
    s.execute(delete(Image).where(Image.id == image.id))
    return [image.sha256]


def referenced(s: Session, shas: Iterable[str]) -> set[str]:
    """Which of ``shas`` some image still names."""
    return set(s.scalars(select(Image.sha256).where(Image.sha256.in_(list(shas))).distinct()))
