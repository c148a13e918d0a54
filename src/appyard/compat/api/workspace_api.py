"""``supervisely.api.workspace_api``: workspaces as the reference's ``WorkspaceInfo`` tuples."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from appyard.compat._errors import NotSupportedError, refused
from appyard.compat._records import WorkspaceInfo, apply_filters, single, workspace_info
from appyard.compat._utils import generate_free_name
from appyard.compat.api._module import ModuleBase
from appyard.errors import NotFoundError

if TYPE_CHECKING:
    from appyard.compat.api.api import Api

__all__ = ["WorkspaceApi", "WorkspaceInfo"]


class WorkspaceApi(ModuleBase):
    _info = WorkspaceInfo

    archive = refused("workspace.archive", "workspaces are not archived in appyard yet.")
    remove_permanently = refused(
        "workspace.remove_permanently", "workspaces are not deleted in appyard yet."
    )
    change_visibility = refused(
        "workspace.change_visibility", "every workspace is visible to its whole team."
    )

    def __init__(self, api: Api) -> None:
        self._api = api
        self._ay = api._ay

    def update(
        self, id: int, name: str | None = None, description: str | None = None
    ) -> WorkspaceInfo:
        """Rename workspace ``id`` and/or change its description (a developer of its team);
        a name taken in the team: ``ConflictError``."""
        if name is None and description is None:
            raise ValueError("'name' or 'description' or both have to be specified")
        return workspace_info(self._ay.workspace.update(id, name, description))

    def get_list(
        self, team_id: int, filters: list[dict[str, Any]] | None = None
    ) -> list[WorkspaceInfo]:
        found = [workspace_info(w) for w in self._ay.workspace.get_list(team_id)]
        return apply_filters(found, filters)

    def get_info_by_id(self, id: int, raise_error: bool = False) -> WorkspaceInfo | None:
        """``GET /workspaces/{id}``: ``None`` when there is none, or it is in none of your
        teams (``raise_error=True``: the reference's ``KeyError``)."""
        try:
            found = self._ay.workspace.get_info_by_id(id)
        except NotFoundError as exc:
            if exc.field != "workspace_id":
                raise
            if raise_error:
                raise KeyError(f"Workspace with id={id} not found in your account") from None
            return None
        self._api._workspace_team[found.id] = found.team_id
        return workspace_info(found)

    def get_info_by_name(self, parent_id: int, name: str) -> WorkspaceInfo | None:
        return single(self.get_list(parent_id, [{"field": "name", "operator": "=", "value": name}]))

    def exists(self, parent_id: int, name: str) -> bool:
        return self.get_info_by_name(parent_id, name) is not None

    def get_free_name(self, parent_id: int, name: str) -> str:
        return generate_free_name({w.name for w in self.get_list(parent_id)}, name)

    def create(
        self,
        team_id: int,
        name: str,
        description: str = "",
        change_name_if_conflict: bool = False,
        hidden: bool = False,
    ) -> WorkspaceInfo:
        """A new workspace; ``change_name_if_conflict``: ``name_001``, ``name_002``, ... when
        the team has one of that name. ``hidden=True``: ``NotSupportedError``."""
        if hidden:
            raise NotSupportedError(
                "hidden workspaces are not supported: every workspace is visible to its team."
            )
        if change_name_if_conflict:
            name = self.get_free_name(team_id, name)
        return workspace_info(self._ay.workspace.create(team_id, name, description))
