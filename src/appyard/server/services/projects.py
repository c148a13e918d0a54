"""Images projects: projects, datasets, images and their annotations (docs/data.md).

Who may do what: a team's viewer reads, a developer (or admin) writes; objects of teams the
caller is not in are 404. An annotation batch is checked whole against each image's real size
and its project's meta, then written whole. A project's meta cannot drop a class or tag that
annotations still use.

An annotation upload takes three steps, so that SQLite's one write lock is held briefly:
``annotation_targets`` reads the images and metas (a read transaction), ``check_annotations``
checks (no transaction: decoding bitmaps takes seconds on a big batch), ``write_annotations``
writes in a short write transaction that looks again at the metas and images and checks again
only the items whose meta changed meanwhile.

Cost: lists are one query each (counts are aggregate subqueries); an image row keeps a small
summary of its annotation (``tags``, ``objects_count``, ``usage``) so lists and meta checks
never read the annotations themselves.
"""

from __future__ import annotations

import hashlib
import io
import re
import warnings
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, NamedTuple, TypeVar

from sqlalchemy import ColumnElement, delete, func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import InstrumentedAttribute, Session, undefer

from appyard.errors import (
    ApiError,
    BadRequestError,
    ConflictError,
    NotFoundError,
)
from appyard.schemas.accounts import Role
from appyard.schemas.annotation import Annotation, AnnotationProblem, ProjectMeta, check_annotation
from appyard.schemas.common import Page
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
from appyard.server.db.models import Dataset, Image, Project, Workspace, utcnow
from appyard.server.security import Principal
from appyard.server.services.accounts import get_workspace, team_role
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
#: what a name of a project, dataset or image may be (as ``schemas.annotation.Name``)
NAME_PATTERN = r"^[^\x00-\x1f/\\]+$"
NAME_MAX = 100

R = TypeVar("R", Project, Dataset, Image)


# -- access -------------------------------------------------------------------------------------


def _allow(s: Session, p: Principal, team_id: int, need: Role, missing: NotFoundError) -> None:
    """The caller's role in ``team_id`` is at least ``need``; not a member: ``missing``."""
    try:
        team_role(s, p, team_id, need)
    except NotFoundError:
        raise missing from None


def _project_missing(project_id: int) -> NotFoundError:
    return NotFoundError(
        f"Project {project_id} not found, or it is not in one of your teams.", field="project_id"
    )


def _dataset_missing(dataset_id: int) -> NotFoundError:
    return NotFoundError(
        f"Dataset {dataset_id} not found, or it is not in one of your teams.", field="dataset_id"
    )


def _image_missing(image_id: int, field: str = "image_id") -> NotFoundError:
    return NotFoundError(
        f"Image {image_id} not found, or it is not in one of your teams.", field=field
    )


def get_project(
    s: Session, p: Principal, project_id: int, need: Role = "viewer", lock: bool = False
) -> Project:
    """The project if the caller may act on it with ``need``; ``lock`` holds its row (writers
    of its meta take it exclusively, writers of annotations shared)."""
    stmt = select(Project).where(Project.id == project_id)
    project = s.scalar(stmt.with_for_update() if lock else stmt)
    if project is None:
        raise _project_missing(project_id)
    _allow(s, p, project.team_id, need, _project_missing(project_id))
    return project


def get_dataset(
    s: Session, p: Principal, dataset_id: int, need: Role = "viewer"
) -> tuple[Dataset, Project]:
    row = s.execute(
        select(Dataset, Project)
        .join(Project, Project.id == Dataset.project_id)
        .where(Dataset.id == dataset_id)
    ).first()
    if row is None:
        raise _dataset_missing(dataset_id)
    dataset, project = row
    _allow(s, p, project.team_id, need, _dataset_missing(dataset_id))
    return dataset, project


def get_image(
    s: Session, p: Principal, image_id: int, need: Role = "viewer", annotation: bool = False
) -> Image:
    stmt = select(Image).where(Image.id == image_id)
    if annotation:
        stmt = stmt.options(undefer(Image.annotation))
    image = s.scalar(stmt)
    if image is None:
        raise _image_missing(image_id)
    _allow(s, p, image.team_id, need, _image_missing(image_id))
    return image


def _images_in_order(
    s: Session,
    p: Principal,
    ids: list[int],
    need: Role,
    field: Callable[[int], str],
    annotation: bool = False,
) -> list[Image]:
    """The images of ``ids`` in that order, in one query; the first one missing or of a team
    the caller is not in is a 404 naming its place (``field(i)``)."""
    stmt = select(Image).where(Image.id.in_(set(ids)))
    if annotation:
        stmt = stmt.options(undefer(Image.annotation))
    found = {im.id: im for im in s.scalars(stmt)}
    checked: set[int] = set()
    out: list[Image] = []
    for i, image_id in enumerate(ids):
        image = found.get(image_id)
        if image is None:
            raise _image_missing(image_id, field(i))
        if image.team_id not in checked:
            _allow(s, p, image.team_id, need, _image_missing(image_id, field(i)))
            checked.add(image.team_id)
        out.append(image)
    return out


# -- names --------------------------------------------------------------------------------------


def _numbered(name: str, keep_extension: bool) -> tuple[str, Callable[[int], str]]:
    """The prefix every numbered variant of ``name`` starts with, and the n-th variant:
    ``name 1``, ``name 2``, ... (for an image ``cat 1.jpg``: its extension stays last)."""
    stem, dot, ext = name.rpartition(".")
    if keep_extension and dot and stem:
        return f"{stem} ", lambda n: f"{stem} {n}.{ext}"
    return f"{name} ", lambda n: f"{name} {n}"


def _free_name(
    s: Session,
    column: InstrumentedAttribute[str],
    scope: ColumnElement[bool],
    name: str,
    keep_extension: bool,
) -> str:
    """``name`` if no row in ``scope`` has it, else the first free numbered variant (one query)."""
    prefix, variant = _numbered(name, keep_extension)
    taken = set(
        s.scalars(
            select(column).where(
                scope, or_(column == name, column.startswith(prefix, autoescape=True))
            )
        )
    )
    if name not in taken:
        return name
    n = 1
    while variant(n) in taken:
        n += 1
    return variant(n)


def _insert_named(
    s: Session,
    make: Callable[[str], R],
    column: InstrumentedAttribute[str],
    scope: ColumnElement[bool],
    name: str,
    change_name_if_conflict: bool,
    taken: Callable[[str], ConflictError],
    parent_gone: Callable[[], NotFoundError | None],
    keep_extension: bool = False,
) -> R:
    """Insert ``make(name)`` under a name unique in ``scope``: a taken name is ``taken(name)``
    (a 409), or, with ``change_name_if_conflict``, the first free ``name N``.

    The unique constraint has the last word: a name won by a concurrent writer between the
    look and the insert is a 409 too (or the next free name is tried).
    """
    for _ in range(100):
        if change_name_if_conflict:
            chosen = _free_name(s, column, scope, name, keep_extension)
        else:
            if s.scalar(select(column).where(scope, column == name)) is not None:
                raise taken(name)
            chosen = name
        row = make(chosen)
        try:
            with s.begin_nested():
                s.add(row)
                s.flush()
        except IntegrityError:
            gone = parent_gone()
            if gone is not None:
                raise gone from None
            if not change_name_if_conflict:
                raise taken(name) from None
            continue
        return row
    raise taken(name)


# -- projects -----------------------------------------------------------------------------------


def _datasets_count() -> Any:
    return (
        select(func.count())
        .select_from(Dataset)
        .where(Dataset.project_id == Project.id)
        .correlate(Project)
        .scalar_subquery()
    )


def _images_count_of_project() -> Any:
    return (
        select(func.count())
        .select_from(Image)
        .where(Image.project_id == Project.id)
        .correlate(Project)
        .scalar_subquery()
    )


def project_info(project: Project, datasets_count: int, images_count: int) -> ProjectInfo:
    return ProjectInfo(
        id=project.id,
        name=project.name,
        description=project.description,
        type="images",
        team_id=project.team_id,
        workspace_id=project.workspace_id,
        datasets_count=datasets_count,
        images_count=images_count,
        created_at=project.created_at,
        updated_at=project.updated_at,
    )


def _project_infos(s: Session, where: ColumnElement[bool]) -> list[ProjectInfo]:
    rows = s.execute(
        select(Project, _datasets_count(), _images_count_of_project())
        .where(where)
        .order_by(Project.id)
    )
    return [project_info(pr, dc, ic) for pr, dc, ic in rows]


def _check_description(description: str) -> None:
    """A description is free text, but without NUL characters (PostgreSQL cannot store one)."""
    if "\x00" in description:
        raise BadRequestError(
            "description: contains a NUL character (\\x00); remove it.", field="description"
        )


def create_project(s: Session, p: Principal, body: ProjectCreate) -> ProjectInfo:
    ws = get_workspace(s, p, body.workspace_id, "developer")
    _check_description(body.description)
    project = _insert_named(
        s,
        lambda name: Project(
            workspace_id=ws.id,
            team_id=ws.team_id,
            name=name,
            description=body.description,
            type=body.type,
            meta=ProjectMeta().model_dump(mode="json"),
        ),
        Project.name,
        Project.workspace_id == ws.id,
        body.name,
        body.change_name_if_conflict,
        lambda name: ConflictError(
            f"Workspace {ws.id} has a project named {name!r} already; pick another name, "
            "or send change_name_if_conflict=true to get a free one.",
            field="name",
        ),
        lambda: (
            NotFoundError(f"Workspace {ws.id} was removed meanwhile.", field="workspace_id")
            if s.get(Workspace, ws.id, populate_existing=True) is None
            else None
        ),
    )
    return project_info(project, 0, 0)


def list_projects(s: Session, p: Principal, workspace_id: int) -> list[ProjectInfo]:
    ws = get_workspace(s, p, workspace_id)
    return _project_infos(s, Project.workspace_id == ws.id)


def project_by_id(s: Session, p: Principal, project_id: int) -> ProjectInfo:
    project = get_project(s, p, project_id)
    return _project_infos(s, Project.id == project.id)[0]


def lookup_project(s: Session, p: Principal, workspace_id: int, name: str) -> ProjectInfo:
    ws = get_workspace(s, p, workspace_id)
    # a name no project can have is not looked for (PostgreSQL refuses a NUL in a query)
    possible = len(name) <= NAME_MAX and re.fullmatch(NAME_PATTERN, name) is not None
    where = (Project.workspace_id == ws.id) & (Project.name == name)
    found = _project_infos(s, where) if possible else []
    if not found:
        raise NotFoundError(
            f"Workspace {ws.id} has no project named {name!r}; "
            "list them with GET /projects?workspace_id=.",
            field="name",
        )
    return found[0]


def delete_project(s: Session, p: Principal, project_id: int) -> list[str]:
    """Remove the project with its datasets and images; returns the sha256 of the files its
    images used (the caller collects those no other image uses, after the commit)."""
    project = get_project(s, p, project_id, "developer", lock=True)
    shas = list(s.scalars(select(Image.sha256).where(Image.project_id == project.id).distinct()))
    s.execute(delete(Project).where(Project.id == project.id))
    return shas


def get_meta(s: Session, p: Principal, project_id: int) -> ProjectMeta:
    return ProjectMeta.model_validate(get_project(s, p, project_id).meta)


def _usage(s: Session, project_id: int) -> tuple[dict[str, list[int]], dict[str, list[int]]]:
    """``{name: [uses, images]}`` of classes and of tags, from the images' summaries."""
    classes: dict[str, list[int]] = {}
    tags: dict[str, list[int]] = {}
    for usage in s.scalars(select(Image.usage).where(Image.project_id == project_id)):
        for kind, into in (("classes", classes), ("tags", tags)):
            for name, n in (usage or {}).get(kind, {}).items():
                if n:
                    counts = into.setdefault(name, [0, 0])
                    counts[0] += n
                    counts[1] += 1
    return classes, tags


def _images_word(n: int) -> str:
    return f"{n} image" if n == 1 else f"{n} images"


def update_meta(s: Session, p: Principal, project_id: int, meta: ProjectMeta) -> ProjectMeta:
    """Replace the meta; a class or tag still in use may not go, nor a used class change shape."""
    project = get_project(s, p, project_id, "developer", lock=True)
    old = ProjectMeta.model_validate(project.meta)
    changed = [
        c for c in old.classes if (new := meta.get_class(c.name)) is None or new.shape != c.shape
    ]
    dropped = [t.name for t in old.tags if t.name not in meta.tag_names()]
    if changed or dropped:
        class_use, tag_use = _usage(s, project.id)
        for c in changed:
            if c.name not in class_use:
                continue
            objects, images = class_use[c.name]
            new = meta.get_class(c.name)
            details = {"class": c.name, "objects": objects, "images": images}
            if new is None:
                raise ConflictError(
                    f"classes: class {c.name!r} is used by {objects} object(s) on "
                    f"{_images_word(images)} of project {project.id}; remove or relabel "
                    "those objects first, or keep the class.",
                    field="classes",
                    details=details,
                )
            index = next(i for i, k in enumerate(meta.classes) if k.name == c.name)
            raise ConflictError(
                f"classes[{index}].shape: class {c.name!r} is a {c.shape} used by {objects} "
                f"object(s) on {_images_word(images)} of project {project.id}; its shape cannot "
                f"become {new.shape} while in use. Add a new class for {new.shape}s instead.",
                field=f"classes[{index}].shape",
                details=details,
            )
        for tag in dropped:
            if tag not in tag_use:
                continue
            uses, images = tag_use[tag]
            raise ConflictError(
                f"tags: tag {tag!r} is used {uses} time(s) on {_images_word(images)} of "
                f"project {project.id}; remove it from those annotations first, or keep the tag.",
                field="tags",
                details={"tag": tag, "uses": uses, "images": images},
            )
    project.meta = meta.model_dump(mode="json")
    project.updated_at = utcnow()
    return meta


# -- datasets -----------------------------------------------------------------------------------


def _images_count_of_dataset() -> Any:
    return (
        select(func.count())
        .select_from(Image)
        .where(Image.dataset_id == Dataset.id)
        .correlate(Dataset)
        .scalar_subquery()
    )


def dataset_info(dataset: Dataset, project: Project, images_count: int) -> DatasetInfo:
    return DatasetInfo(
        id=dataset.id,
        name=dataset.name,
        description=dataset.description,
        project_id=dataset.project_id,
        team_id=project.team_id,
        workspace_id=project.workspace_id,
        images_count=images_count,
        created_at=dataset.created_at,
    )


def _dataset_infos(s: Session, project: Project, where: ColumnElement[bool]) -> list[DatasetInfo]:
    rows = s.execute(
        select(Dataset, _images_count_of_dataset())
        .where(Dataset.project_id == project.id, where)
        .order_by(Dataset.id)
    )
    return [dataset_info(ds, project, n) for ds, n in rows]


def create_dataset(s: Session, p: Principal, body: DatasetCreate) -> DatasetInfo:
    project = get_project(s, p, body.project_id, "developer")
    _check_description(body.description)
    dataset = _insert_named(
        s,
        lambda name: Dataset(project_id=project.id, name=name, description=body.description),
        Dataset.name,
        Dataset.project_id == project.id,
        body.name,
        body.change_name_if_conflict,
        lambda name: ConflictError(
            f"Project {project.id} has a dataset named {name!r} already; pick another name, "
            "or send change_name_if_conflict=true to get a free one.",
            field="name",
        ),
        lambda: (
            _project_missing(project.id)
            if s.get(Project, project.id, populate_existing=True) is None
            else None
        ),
    )
    return dataset_info(dataset, project, 0)


def list_datasets(s: Session, p: Principal, project_id: int) -> list[DatasetInfo]:
    project = get_project(s, p, project_id)
    return _dataset_infos(s, project, Dataset.project_id == project.id)


def dataset_by_id(s: Session, p: Principal, dataset_id: int) -> DatasetInfo:
    dataset, project = get_dataset(s, p, dataset_id)
    return _dataset_infos(s, project, Dataset.id == dataset.id)[0]


# -- images -------------------------------------------------------------------------------------


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


def _summary(ann: Annotation) -> dict[str, Any]:
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


def _image_name_taken(dataset_id: int, name: str) -> ConflictError:
    return ConflictError(
        f"Dataset {dataset_id} has an image named {name!r} already; pick another name, "
        "or send change_name_if_conflict=true to get a free one.",
        field="name",
    )


def check_upload(
    s: Session,
    p: Principal,
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
    dataset_id: int,
    name: str,
    file: ImageFile,
    change_name_if_conflict: bool = False,
) -> ImageInfo:
    """The record of an uploaded image (its file is stored already), with an empty
    annotation of its real size."""
    dataset, project = get_dataset(s, p, dataset_id, "developer")
    empty = Annotation.empty(file.width, file.height)
    image = _insert_named(
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
            **_summary(empty),
        ),
        Image.name,
        Image.dataset_id == dataset.id,
        name,
        change_name_if_conflict,
        lambda taken: _image_name_taken(dataset.id, taken),
        lambda: (
            _dataset_missing(dataset.id)
            if s.get(Dataset, dataset.id, populate_existing=True) is None
            else None
        ),
        keep_extension=True,
    )
    return image_info(image)


def list_images(
    s: Session, p: Principal, dataset_id: int, limit: int = 100, cursor: int | None = None
) -> Page[ImageInfo]:
    """A page of the dataset's images by id; ``next_cursor`` is the last id of this page."""
    dataset, _ = get_dataset(s, p, dataset_id)
    stmt = select(Image).where(Image.dataset_id == dataset.id)
    if cursor is not None:
        stmt = stmt.where(Image.id > cursor)
    return keyset_page(list(s.scalars(stmt.order_by(Image.id).limit(limit + 1))), limit, image_info)


def image_by_id(s: Session, p: Principal, image_id: int) -> ImageInfo:
    return image_info(get_image(s, p, image_id))


def delete_image(s: Session, p: Principal, image_id: int) -> list[str]:
    """Remove the image; returns its file's sha256 (collected after the commit if unused)."""
    image = get_image(s, p, image_id, "developer")
    s.execute(delete(Image).where(Image.id == image.id))
    return [image.sha256]


def referenced(s: Session, shas: Iterable[str]) -> set[str]:
    """Which of ``shas`` some image still names."""
    return set(s.scalars(select(Image.sha256).where(Image.sha256.in_(list(shas))).distinct()))


# -- annotations --------------------------------------------------------------------------------


def _annotation_info(im: Image) -> AnnotationInfo:
    return AnnotationInfo(
        image_id=im.id,
        image_name=im.name,
        dataset_id=im.dataset_id,
        annotation=im.annotation,
        updated_at=im.updated_at,
    )


def get_annotation(s: Session, p: Principal, image_id: int) -> AnnotationInfo:
    return _annotation_info(get_image(s, p, image_id, annotation=True))


def download_annotations(s: Session, p: Principal, body: AnnotationIds) -> list[AnnotationInfo]:
    images = _images_in_order(
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


def annotation_targets(s: Session, p: Principal, body: AnnotationUpload) -> BatchTargets:
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
    images = _images_in_order(s, p, ids, "developer", lambda i: f"items[{i}].image_id")
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
            raise _image_missing(im.id, f"items[{i}].image_id")
        _check_item(i, item.annotation, im, meta)
    return CheckedBatch(
        targets=targets,
        rows=[item.annotation.to_json() for item in body.items],
        summaries=[_summary(item.annotation) for item in body.items],
    )


def write_annotations(s: Session, p: Principal, batch: CheckedBatch) -> list[AnnotationInfo]:
    """Last step, in a short write transaction: write a checked batch, all of it or nothing.
    What the check relied on is looked at again: an image removed meanwhile is a 404 naming
    its item; an item whose project's meta changed meanwhile is checked again against the new
    meta (a class or tag it uses gone is a 422 naming the field)."""
    targets = batch.targets
    body = targets.body
    ids = [item.image_id for item in body.items]
    images = _images_in_order(s, p, ids, "developer", lambda i: f"items[{i}].image_id")
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
            raise _image_missing(im.id, f"items[{i}].image_id")
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
