"""Annotations of images: read, download, and the batch upload (docs/data.md).

A viewer of an image's team reads its annotation; a developer (or admin) writes. A batch is
checked whole against each image's real size and its project's meta, then written whole.

An upload takes three steps, so that SQLite's one write lock is held briefly:
``annotation_targets`` reads the images and metas (a read transaction), ``check_annotations``
checks (no transaction: decoding bitmaps takes seconds on a big batch), ``write_annotations``
writes in a short write transaction that looks again at the metas and images and checks again
only the items whose meta changed meanwhile.

Cost: an image row keeps a small summary of its annotation (``summary``: ``tags``,
``objects_count``, ``usage``), so lists and meta checks never read the annotations themselves.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, NamedTuple

from sqlalchemy import select
from sqlalchemy.orm import Session

from appyard.errors import ApiError, BadRequestError
from appyard.schemas.annotation import Annotation, AnnotationProblem, ProjectMeta, check_annotation
from appyard.schemas.projects import AnnotationIds, AnnotationInfo, AnnotationUpload
from appyard.server.db.models import Image, Project, utcnow
from appyard.server.security import Principal
from appyard.server.services.access import get_image, image_missing, images_in_order


def summary(ann: Annotation) -> dict[str, Any]:
    """The columns an image keeps from its annotation, for lists and meta checks."""
    classes = Counter(o.class_ for o in ann.objects)
    tags = Counter(ann.tags)
    for o in ann.objects:
        tags.update(o.tags)
    return {
        "tags": list(ann.tags),
        "objects_count": len(ann.objects),
        "usage": {"classes": dict(classes), "tags": dict(tags)},
    }


def _annotation_info(im: Image) -> AnnotationInfo:
    return AnnotationInfo(
        image_id=im.id,
        image_name=im.name,
        dataset_id=im.dataset_id,
        annotation=im.annotation,
        updated_at=im.updated_at,
    )


def get_annotation(s: Session, p: Principal, *, image_id: int) -> AnnotationInfo:
    return _annotation_info(get_image(s, p, image_id, annotation=True))


def download_annotations(s: Session, p: Principal, *, body: AnnotationIds) -> list[AnnotationInfo]:
    images = images_in_order(
        s, p, body.image_ids, "viewer", lambda i: f"image_ids[{i}]", annotation=True
    )
    return [_annotation_info(im) for im in images]


#: the largest JSON body of ``PUT /annotations`` (a batch of up to 500 annotations)
MAX_ANNOTATIONS_BODY = 64 * 1024 * 1024


def annotations_too_large() -> ApiError:
    return ApiError(
        f"body: the annotation batch is larger than {MAX_ANNOTATIONS_BODY // (1024 * 1024)} MiB; "
        "send fewer annotations per request (the SDK's upload_jsons splits a list in batches).",
        field="body",
        status_code=413,
        code="too_large",
    )


class ImageRef(NamedTuple):
    """What an annotation's check relies on of its image."""

    id: int
    name: str
    project_id: int
    width: int
    height: int


def _ref(im: Image) -> ImageRef:
    return ImageRef(im.id, im.name, im.project_id, im.width, im.height)


@dataclass(frozen=True)
class BatchTargets:
    """What ``annotation_targets`` read for a batch: each item's image, each project's meta."""

    body: AnnotationUpload
    images: list[ImageRef]
    metas: dict[int, dict[str, Any]]


@dataclass(frozen=True)
class CheckedBatch:
    """A batch ``check_annotations`` passed, with what the check relied on (``targets``) and
    what is to be written: each item's annotation JSON and summary."""

    targets: BatchTargets
    rows: list[dict[str, Any]]
    summaries: list[dict[str, Any]]


def _check_item(i: int, ann: Annotation, im: ImageRef, meta: ProjectMeta) -> None:
    """``check_annotation`` of item ``i``; a problem is a 422 naming the item's field."""
    try:
        check_annotation(ann, meta, im.width, im.height)
    except AnnotationProblem as problem:
        field = f"items[{i}].annotation.{problem.field}"
        raise BadRequestError(
            f"{field}: {problem.message} (image {im.id} {im.name!r})", field=field
        ) from None
    except Exception as exc:  # a value the check could not handle is bad input, not a crash
        field = f"items[{i}].annotation"
        raise BadRequestError(
            f"{field}: the annotation cannot be checked ({type(exc).__name__}: {exc}); "
            f"check its numbers and bitmaps (image {im.id} {im.name!r})",
            field=field,
        ) from None


def _fits_meta(ann: Annotation, meta: ProjectMeta) -> bool:
    """Whether every class (with its shape) and tag ``ann`` uses is in ``meta``: all that
    ``check_annotation`` asks of the meta (the geometry depends on the image alone)."""
    tags = meta.tag_names()
    if not tags.issuperset(ann.tags):
        return False
    for obj in ann.objects:
        cls = meta.get_class(obj.class_)
        if cls is None or cls.shape != obj.geometry.type or not tags.issuperset(obj.tags):
            return False
    return True


def _metas(s: Session, project_ids: Iterable[int], lock: bool = False) -> dict[int, Any]:
    stmt = select(Project.id, Project.meta).where(Project.id.in_(set(project_ids)))
    if lock:
        stmt = stmt.order_by(Project.id).with_for_update(read=True)
    return {pid: meta for pid, meta in s.execute(stmt)}


def annotation_targets(s: Session, p: Principal, *, body: AnnotationUpload) -> BatchTargets:
    """First step of an annotation upload, in a read transaction: each item's image (the
    caller may write to it; an image twice is a 422, one missing a 404, naming the item) and
    their projects' metas."""
    ids = [item.image_id for item in body.items]
    first_at: dict[int, int] = {}
    for i, image_id in enumerate(ids):
        if image_id in first_at:
            raise BadRequestError(
                f"items[{i}].image_id: image {image_id} is in the batch twice "
                f"(also items[{first_at[image_id]}]); send one annotation per image.",
                field=f"items[{i}].image_id",
            )
        first_at[image_id] = i
    images = images_in_order(s, p, ids, "developer", lambda i: f"items[{i}].image_id")
    metas = _metas(s, {im.project_id for im in images})
    return BatchTargets(body=body, images=[_ref(im) for im in images], metas=metas)


def check_annotations(targets: BatchTargets) -> CheckedBatch:
    """Second step, in no transaction (decoding bitmaps takes time, and holds nothing): check
    every item against its image and its project's meta; the first problem is a 422 naming
    its item."""
    body = targets.body
    metas = {pid: ProjectMeta.model_validate(meta) for pid, meta in targets.metas.items()}
    for i, (item, im) in enumerate(zip(body.items, targets.images, strict=True)):
        meta = metas.get(im.project_id)
        if meta is None:  # removed meanwhile
            raise image_missing(im.id, f"items[{i}].image_id")
        _check_item(i, item.annotation, im, meta)
    return CheckedBatch(
        targets=targets,
        rows=[item.annotation.to_json() for item in body.items],
        summaries=[summary(item.annotation) for item in body.items],
    )


def write_annotations(s: Session, p: Principal, *, batch: CheckedBatch) -> list[AnnotationInfo]:
    """Last step, in a short write transaction: write a checked batch, all of it or nothing.
    What the check relied on is looked at again: an image removed meanwhile is a 404 naming
    its item; an item whose project's meta changed meanwhile is checked again against the new
    meta (a class or tag it uses gone is a 422 naming the field)."""
    targets = batch.targets
    body = targets.body
    ids = [item.image_id for item in body.items]
    images = images_in_order(s, p, ids, "developer", lambda i: f"items[{i}].image_id")
    # On PostgreSQL, hold the metas of their projects (shared: no meta change slips in
    # between), then the images (a deletion meanwhile is a 404, not a lost update); in the
    # order a project's deletion takes them, so the two cannot deadlock. SQLite: one writer.
    raw_metas = _metas(s, {im.project_id for im in images}, lock=True)
    held = set(
        s.scalars(select(Image.id).where(Image.id.in_(ids)).order_by(Image.id).with_for_update())
    )
    changed: dict[int, ProjectMeta] = {}
    for i, (item, im) in enumerate(zip(body.items, images, strict=True)):
        raw = raw_metas.get(im.project_id)
        if raw is None or im.id not in held:  # removed meanwhile
            raise image_missing(im.id, f"items[{i}].image_id")
        if _ref(im) != targets.images[i]:
            _check_item(i, item.annotation, _ref(im), ProjectMeta.model_validate(raw))
        elif raw != targets.metas.get(im.project_id):
            if im.project_id not in changed:
                changed[im.project_id] = ProjectMeta.model_validate(raw)
            meta = changed[im.project_id]
            if not _fits_meta(item.annotation, meta):
                _check_item(i, item.annotation, _ref(im), meta)  # names the field
    now = utcnow()
    for im, row, summary in zip(images, batch.rows, batch.summaries, strict=True):
        im.annotation = row
        im.tags = summary["tags"]
        im.objects_count = summary["objects_count"]
        im.usage = summary["usage"]
        im.updated_at = now
    s.flush()
    return [_annotation_info(im) for im in images]
