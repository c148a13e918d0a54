"""``api.project``, ``api.dataset`` (docs/data.md); images and annotations are in ``image_api``.

Every call returns the server's wire model (``ProjectInfo``, ``ImageInfo``, ...); metas and
annotations travel as JSON dicts in the format of ``appyard.schemas.annotation``. Creating calls
(a project, a dataset, an image upload) are not retried once sent, so a lost answer never makes
a second one; reads and the atomic annotation batches are. Long lists go in batches: annotations
by :data:`~appyard.schemas.projects.ANNOTATION_BATCH` (each batch is written whole or not at
all), image lists page after page.

``progress_cb``, where a call takes one, is called with the number of items just done (an
increment), so ``session.progress_bar(n).update`` fits it as is.

Each resource has an async twin over the same calls (``_calls.projects``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from typing import Any

from appyard.schemas.annotation import ProjectMeta
from appyard.schemas.projects import DatasetInfo, ProjectInfo
from appyard.sdk._async import AsyncCore
from appyard.sdk._calls import projects as calls
from appyard.sdk._calls.effects import twin_of
from appyard.sdk._sync import SyncCore


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
        op = calls.create_project(workspace_id, name, description, change_name_if_conflict)
        return self._core.run(op)

    def get_info_by_id(self, id: int) -> ProjectInfo:
        """One project; ``NotFoundError`` if there is none (or it is not visible to you)."""
        return self._core.run(calls.project(id))

    def get_info_by_name(self, workspace_id: int, name: str) -> ProjectInfo | None:
        """The project of that name in the workspace, or ``None`` if it has none; a workspace
        that is not there (or not yours) is a ``NotFoundError``."""
        return self._core.run(calls.project_by_name(workspace_id, name))

    def get_list(self, workspace_id: int) -> list[ProjectInfo]:
        """The projects of a workspace."""
        return self._core.run(calls.projects(workspace_id))

    def get_meta(self, id: int) -> dict[str, Any]:
        """The project meta as JSON (``ProjectMeta.model_validate`` gives the typed model)."""
        return self._core.run(calls.get_meta(id))

    def update_meta(self, id: int, meta: Mapping[str, Any] | ProjectMeta) -> dict[str, Any]:
        """Replace the meta; the answer is the meta as stored (missing colours filled in).

        Removing a class or tag still in use, or changing a used class's shape, is a
        ``ConflictError`` naming it.
        """
        return self._core.run(calls.update_meta(id, meta))

    def remove(self, id: int) -> None:
        """Delete the project with its datasets, images and annotations."""
        self._core.run(calls.remove_project(id))

    @contextmanager
    def removed_on_failure(self, id: int) -> Iterator[None]:
        """Remove project ``id`` if the block raises (a stop's ``SystemExit`` too): an app that
        builds a project leaves a whole one or none. A failed removal is logged, and the
        block's own error is raised either way."""
        try:
            yield
        except BaseException:
            self._core.run(calls.remove_unfinished(id))
            raise


@twin_of(ProjectApi)
class AsyncProjectApi:
    def __init__(self, core: AsyncCore) -> None:
        self._core = core

    async def create(
        self,
        workspace_id: int,
        name: str,
        description: str = "",
        change_name_if_conflict: bool = False,
    ) -> ProjectInfo:
        op = calls.create_project(workspace_id, name, description, change_name_if_conflict)
        return await self._core.run(op)

    async def get_info_by_id(self, id: int) -> ProjectInfo:
        return await self._core.run(calls.project(id))

    async def get_info_by_name(self, workspace_id: int, name: str) -> ProjectInfo | None:
        return await self._core.run(calls.project_by_name(workspace_id, name))

    async def get_list(self, workspace_id: int) -> list[ProjectInfo]:
        return await self._core.run(calls.projects(workspace_id))

    async def get_meta(self, id: int) -> dict[str, Any]:
        return await self._core.run(calls.get_meta(id))

    async def update_meta(self, id: int, meta: Mapping[str, Any] | ProjectMeta) -> dict[str, Any]:
        return await self._core.run(calls.update_meta(id, meta))

    async def remove(self, id: int) -> None:
        await self._core.run(calls.remove_project(id))

    @asynccontextmanager
    async def removed_on_failure(self, id: int) -> AsyncIterator[None]:
        try:
            yield
        except BaseException:
            await self._core.run(calls.remove_unfinished(id))
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
        op = calls.create_dataset(project_id, name, description, change_name_if_conflict)
        return self._core.run(op)

    def get_list(self, project_id: int) -> list[DatasetInfo]:
        """The datasets of a project."""
        return self._core.run(calls.datasets(project_id))

    def get_info_by_id(self, id: int) -> DatasetInfo:
        """One dataset; ``NotFoundError`` if there is none (or it is not visible to you)."""
        return self._core.run(calls.dataset(id))


@twin_of(DatasetApi)
class AsyncDatasetApi:
    def __init__(self, core: AsyncCore) -> None:
        self._core = core

    async def create(
        self,
        project_id: int,
        name: str,
        description: str = "",
        change_name_if_conflict: bool = False,
    ) -> DatasetInfo:
        op = calls.create_dataset(project_id, name, description, change_name_if_conflict)
        return await self._core.run(op)

    async def get_list(self, project_id: int) -> list[DatasetInfo]:
        return await self._core.run(calls.datasets(project_id))

    async def get_info_by_id(self, id: int) -> DatasetInfo:
        return await self._core.run(calls.dataset(id))
