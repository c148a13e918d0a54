"""``supervisely.api.team_api``: teams as the reference's ``TeamInfo`` tuples."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from appyard.compat._errors import NotSupportedError, refused
from appyard.compat._records import TeamInfo, apply_filters, single, team_info
from appyard.compat._utils import generate_free_name
from appyard.compat.api._module import ModuleBase

if TYPE_CHECKING:
    from appyard.compat.api.api import Api

__all__ = ["TeamApi", "TeamInfo"]


class TeamApi(ModuleBase):
    _info = TeamInfo

    remove_permanently = refused(
        "team.remove_permanently", "teams are not deleted in appyard yet; remove its members."
    )
    get_activity = refused(
        "team.get_activity",
        "appyard keeps no activity log; list the team's sessions with api.app.get_list or "
        "api.task.get_list.",
    )

    def __init__(self, api: Api) -> None:
        self._api = api
        self._ay = api._ay

    def get_list(self, filters: list[dict[str, Any]] | None = None) -> list[TeamInfo]:
        """The caller's teams, ``filters`` as in the reference (``name``, ``id``, ...)."""
        return apply_filters([team_info(t) for t in self._ay.team.get_list()], filters)

    def get_info_by_id(self, id: int, raise_error: bool = False) -> TeamInfo | None:
        info = single(self.get_list([{"field": "id", "operator": "=", "value": id}]))
        if info is None and raise_error:
            raise KeyError(f"Team with id={id} not found in your account")
        return info

    def get_info_by_name(self, name: str) -> TeamInfo | None:
        return single(self.get_list([{"field": "name", "operator": "=", "value": name}]))

    def exists(self, name: str) -> bool:
        return self.get_info_by_name(name) is not None

    def get_free_name(self, name: str) -> str:
        return generate_free_name({t.name for t in self.get_list()}, name)

    def create(
        self, name: str, description: str = "", change_name_if_conflict: bool = False
    ) -> TeamInfo:
        """A new team (the caller is its admin); ``description`` is not kept by appyard."""
        if change_name_if_conflict:
            name = self.get_free_name(name)
        return team_info(self._ay.team.create(name))

    def update(self, id: int, name: str | None = None, description: str | None = None) -> TeamInfo:
        """Rename team ``id`` (a team admin). appyard keeps no team description (as in
        ``create``): with a ``name`` it is not kept; alone, ``NotSupportedError``."""
        if name is None and description is None:
            raise ValueError("'name' or 'description' or both have to be specified")
        if name is None:
            raise NotSupportedError(
                "a team description is not supported: appyard keeps none; pass name= to rename "
                "the team."
            )
        return team_info(self._ay.team.update(id, name))

    def archive(self, id: int) -> None:
        raise NotSupportedError("archiving teams is not supported in appyard yet.")
