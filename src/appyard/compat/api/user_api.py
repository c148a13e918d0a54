"""``supervisely.api.user_api``: users as the reference's ``UserInfo`` tuples.

``role`` is the instance role (``admin`` / ``user``) for ``get_my_info`` / ``get_info_by_*``
and the team role (``admin``, ``developer``, ``viewer``) for the team-member calls.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NamedTuple

from appyard.compat._errors import NotSupportedError, refused
from appyard.compat._records import UserInfo, apply_filters, member_info, single, user_info
from appyard.compat.api._module import ModuleBase
from appyard.errors import PermissionDeniedError
from appyard.schemas.accounts import Role

if TYPE_CHECKING:
    from appyard.compat.api.api import Api

__all__ = ["UserApi", "UserInfo"]


class _Membership(NamedTuple):
    id: int
    name: str
    role_id: int | None
    role: str | None


#: the reference's default role ids (``api.role.DefaultRole``) that appyard has a role for
_ROLE_IDS: dict[int, Role] = {1: "admin", 2: "developer", 4: "viewer"}


def _role(role_id: int) -> Role:
    """appyard's role for one of the reference's default role ids."""
    role = _ROLE_IDS.get(role_id)
    if role is None:
        raise NotSupportedError(
            f"role_id={role_id} is not supported: appyard's team roles are admin (1), "
            "developer (2) and viewer (4)."
        )
    return role


class UserApi(ModuleBase):
    Membership = _Membership
    _info = UserInfo

    get_member_activity = refused(
        "user.get_member_activity", "appyard keeps no activity log; list the user's sessions."
    )
    get_ssh_keys = refused("user.get_ssh_keys", "appyard keeps no ssh keys.")
    get_token = refused(
        "user.get_token",
        "appyard never hands out another user's token; that user makes one (appyard token "
        "create), or the admin makes a user and logs in as it.",
    )

    def __init__(self, api: Api) -> None:
        self._api = api
        self._ay = api._ay

    def get_my_info(self) -> UserInfo:
        return user_info(self._ay.user.me())

    def get_list(self, filters: list[dict[str, Any]] | None = None) -> list[UserInfo]:
        """Every user (an instance admin); another caller sees itself and the members of its
        teams."""
        try:
            found = [user_info(u) for u in self._ay.user.get_list()]
        except PermissionDeniedError:
            found = self._visible()
        return apply_filters(found, filters)

    def _visible(self) -> list[UserInfo]:
        me = user_info(self._ay.user.me())
        seen = {me.id: me}
        for team in self._ay.team.get_list():
            for m in self._ay.team.get_members(team.id):
                seen.setdefault(m.user_id, UserInfo(id=m.user_id, login=m.login, name=m.login))
        return list(seen.values())

    def get_info_by_id(self, id: int) -> UserInfo | None:
        return single(self.get_list([{"field": "id", "operator": "=", "value": id}]))

    def get_info_by_login(self, login: str) -> UserInfo | None:
        return single(self.get_list([{"field": "login", "operator": "=", "value": login}]))

    def get_team_members(self, team_id: int) -> list[UserInfo]:
        return [member_info(m) for m in self._ay.team.get_members(team_id)]

    def get_member_info_by_login(self, team_id: int, login: str) -> UserInfo | None:
        return single([u for u in self.get_team_members(team_id) if u.login == login])

    def get_member_info_by_id(self, team_id: int, user_id: int) -> UserInfo | None:
        return single([u for u in self.get_team_members(team_id) if u.id == user_id])

    def get_teams(self, id: int) -> list[_Membership]:
        """The teams of user ``id`` that the caller can see, with its role in each."""
        out = []
        for team in self._ay.team.get_list():
            for m in self._ay.team.get_members(team.id):
                if m.user_id == id:
                    out.append(_Membership(team.id, team.name, None, m.role))
        return out

    def get_team_role(self, user_id: int, team_id: int) -> _Membership | None:
        return next((m for m in self.get_teams(user_id) if m.id == team_id), None)

    def add_to_team_by_login(
        self, user_login: str, team_id: int, role: str = "developer"
    ) -> dict[str, int]:
        """``role``: appyard's role name (``admin``, ``developer``, ``viewer``)."""
        member = self._ay.team.add_member(team_id, user_login, role)  # type: ignore[arg-type]
        return {"userId": member.user_id}

    def create(
        self,
        login: str,
        password: str,
        is_restricted: bool = False,
        name: str = "",
        email: str = "",
    ) -> UserInfo:
        """A new user (an instance admin's call); ``name`` and ``email`` are not kept.
        ``is_restricted=True``: ``NotSupportedError`` (appyard has no restricted users)."""
        if is_restricted:
            raise NotSupportedError(
                "is_restricted=True is not supported: appyard has no restricted users; make "
                "the user a viewer of the team (add_to_team(..., role_id=4))."
            )
        return user_info(self._ay.user.create(login, password))

    def add_to_team(self, user_id: int, team_id: int, role_id: int) -> dict[str, int]:
        """``role_id`` is one of the reference's default roles that appyard has: 1 admin,
        2 developer, 4 viewer; the others raise ``NotSupportedError``."""
        role = _role(role_id)
        user = self.get_info_by_id(user_id)
        if user is None:
            from appyard.errors import NotFoundError

            raise NotFoundError(f"User {user_id} not found")
        return self.add_to_team_by_login(user.login, team_id, role)

    def change_team_role(self, user_id: int, team_id: int, role_id: int) -> None:
        """Give member ``user_id`` of ``team_id`` another role (a team admin): ``role_id`` 1
        admin, 2 developer, 4 viewer (others: ``NotSupportedError``); the team keeps an
        enabled admin (``ConflictError``)."""
        self._ay.team.change_member_role(team_id, user_id, _role(role_id))

    def update(
        self, id: int, password: str | None = None, name: str | None = None
    ) -> UserInfo | None:
        """Change user ``id``'s password and/or display name (the user itself, or an instance
        admin); nothing given: ``None``, as in the reference."""
        if password is None and name is None:
            return None
        return user_info(self._ay.user.update(id, name=name, password=password))

    def remove_from_team(self, user_id: int, team_id: int) -> None:
        self._ay.team.remove_member(team_id, user_id)

    def disable(self, id: int) -> None:
        self._ay.user.disable(id)

    def enable(self, id: int) -> None:
        self._ay.user.enable(id)
