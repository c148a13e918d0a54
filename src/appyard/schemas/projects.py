"""Images projects, datasets, images and annotation batches on the wire."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from appyard.schemas.annotation import Annotation, Name
from appyard.schemas.common import Id, Wire

ProjectType = Literal["images"]
#: most annotations one request may carry (the SDK sends bigger lists in batches of this)
ANNOTATION_BATCH = 500


class ProjectCreate(Wire):
    workspace_id: Id
    name: Name
    description: str = Field(default="", max_length=5000)
    type: ProjectType = "images"
    #: a taken name gets a suffix (" 1", " 2", ...) instead of a 409
    change_name_if_conflict: bool = False


class ProjectInfo(BaseModel):
    id: int
    name: str
    description: str
    type: ProjectType
    team_id: int
    workspace_id: int
    datasets_count: int
    images_count: int
    created_at: datetime
    updated_at: datetime


class DatasetCreate(Wire):
    project_id: Id
    name: Name
    description: str = Field(default="", max_length=5000)
    change_name_if_conflict: bool = False


class DatasetInfo(BaseModel):
    id: int
    name: str
    description: str
    project_id: int
    team_id: int
    workspace_id: int
    images_count: int
    created_at: datetime


class ImageInfo(BaseModel):
    id: int
    name: str
    dataset_id: int
    project_id: int
    team_id: int
    width: int
    height: int
    size: int  # bytes
    mime: str  # image/jpeg, image/png, ...
    sha256: str
    tags: list[str]  # the image tags of its annotation
    objects_count: int
    created_at: datetime
    updated_at: datetime


class AnnotationItem(Wire):
    image_id: Id
    annotation: Annotation


class AnnotationUpload(Wire):
    """A batch of annotations: all are checked, then all are written, or none."""

    items: list[AnnotationItem] = Field(min_length=1, max_length=ANNOTATION_BATCH)


class AnnotationIds(Wire):
    image_ids: list[Id] = Field(min_length=1, max_length=ANNOTATION_BATCH)


class AnnotationInfo(BaseModel):
    image_id: int
    image_name: str
    dataset_id: int
    annotation: dict[str, Any]  # Annotation.to_json()
    updated_at: datetime
