"""Datasets of images projects: creation and lists (docs/data.md).

A dataset is visible to whoever may see its project (``services.access``); a developer (or
admin) of the project's team creates one. Lists are one query (image counts are an aggregate
subquery).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import Session

from appyard.errors import ConflictError
from appyard.schemas.projects import DatasetCreate, DatasetInfo
from appyard.server.db.models import Dataset, Image, Project
from appyard.server.security import Principal
from appyard.server.services.access import get_dataset, get_project, project_missing
from appyard.server.services.names import check_description, insert_named


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


def create_dataset(s: Session, p: Principal, *, body: DatasetCreate) -> DatasetInfo:
    project = get_project(s, p, body.project_id, "developer")
    check_description(body.description)
    dataset = insert_named(
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
            project_missing(project.id)
            if s.get(Project, project.id, populate_existing=True) is None
            else None
        ),
    )
    return dataset_info(dataset, project, 0)


def list_datasets(s: Session, p: Principal, *, project_id: int) -> list[DatasetInfo]:
    project = get_project(s, p, project_id)
    return _dataset_infos(s, project, Dataset.project_id == project.id)


def dataset_by_id(s: Session, p: Principal, *, dataset_id: int) -> DatasetInfo:
    dataset, project = get_dataset(s, p, dataset_id)
    return _dataset_infos(s, project, Dataset.id == dataset.id)[0]
