"""Images projects: creation, lists, lookup, removal, and the meta (docs/data.md).

Who may do what (``services.access``): a team's viewer reads, a developer (or admin) writes;
projects of teams the caller is not in are 404. A project's meta cannot drop a class or tag that
annotations still use.

Cost: lists are one query each (counts are aggregate subqueries); a meta check reads the small
summary each image row keeps of its annotation (``usage``), never the annotations themselves.
"""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import ColumnElement, delete, func, select
from sqlalchemy.orm import Session

from appyard.errors import ConflictError, NotFoundError
from appyard.schemas.annotation import ProjectMeta
from appyard.schemas.projects import ProjectCreate, ProjectInfo
from appyard.server.db.models import Dataset, Image, Project, Workspace, utcnow
from appyard.server.security import Principal
from appyard.server.services.access import get_project
from appyard.server.services.accounts import get_workspace
from appyard.server.services.names import NAME_MAX, NAME_PATTERN, check_description, insert_named


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


def create_project(s: Session, p: Principal, *, body: ProjectCreate) -> ProjectInfo:
    ws = get_workspace(s, p, body.workspace_id, "developer")
    check_description(body.description)
    project = insert_named(
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


def list_projects(s: Session, p: Principal, *, workspace_id: int) -> list[ProjectInfo]:
    ws = get_workspace(s, p, workspace_id)
    return _project_infos(s, Project.workspace_id == ws.id)


def project_by_id(s: Session, p: Principal, *, project_id: int) -> ProjectInfo:
    project = get_project(s, p, project_id)
    return _project_infos(s, Project.id == project.id)[0]


def lookup_project(s: Session, p: Principal, *, workspace_id: int, name: str) -> ProjectInfo:
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


def delete_project(s: Session, p: Principal, *, project_id: int) -> list[str]:
    """Remove the project with its datasets and images; returns the sha256 of the files its
    images used (the caller collects those no other image uses, after the commit)."""
    project = get_project(s, p, project_id, "developer", lock=True)
    shas = list(s.scalars(select(Image.sha256).where(Image.project_id == project.id).distinct()))
    s.execute(delete(Project).where(Project.id == project.id))
    return shas


def get_meta(s: Session, p: Principal, *, project_id: int) -> ProjectMeta:
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


def update_meta(s: Session, p: Principal, *, project_id: int, meta: ProjectMeta) -> ProjectMeta:
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
