"""The SDK's calls for running teams, sync and async, against the real server."""

from __future__ import annotations

import asyncio

import pytest

from appyard.errors import AuthenticationError, BadRequestError, ConflictError, NotFoundError
from appyard.sdk import Api, AsyncApi
from tests.sdk.helpers import Tenant
from tests.support import ServerProc


def test_team_admin_calls(server: ServerProc, tenant: Tenant) -> None:
    api = tenant.api
    user = api.user.create("dora")
    token = api.user.create_token("dora", user.id).token
    api.team.add_member(tenant.team_id, "dora", "admin")
    listed = api.user.get_tokens(team_id=tenant.team_id)
    assert {"user", "agent"} <= {t.kind for t in listed}
    assert any(t.agent_id == tenant.agent_id for t in listed)
    rotated = api.agent.rotate_token(tenant.agent_id)
    assert rotated.kind == "agent" and rotated.token.startswith("aya_")
    with Api(server.url, token) as dora:
        dora.team.remove_member(tenant.team_id, dora.user.me().id)  # another admin is left
        assert tenant.team_id not in {t.id for t in dora.team.get_list()}
        with pytest.raises(ConflictError):
            api.user.disable(api.user.me().id)
        assert api.user.disable(user.id).disabled is True
        with pytest.raises(AuthenticationError):
            dora.user.me()
    assert api.user.enable(user.id).disabled is False


def test_team_admin_calls_async(server: ServerProc, tenant: Tenant) -> None:
    async def go() -> None:
        async with AsyncApi(server.url, server.admin_token) as api:
            user = await api.user.create("eve")
            await api.team.add_member(tenant.team_id, "eve", "viewer")
            await api.team.remove_member(tenant.team_id, user.id)
            assert (await api.user.disable(user.id)).disabled
            assert not (await api.user.enable(user.id)).disabled
            mine = await api.user.get_tokens()
            assert all(t.kind == "user" for t in mine)
            token = await api.user.create_token("eve", user.id)
            await api.user.revoke_token(token.id)
            rotated = await api.agent.rotate_token(tenant.agent_id)
            assert rotated.agent_id == tenant.agent_id

    asyncio.run(go())


def test_renames_and_role_changes(server: ServerProc, tenant: Tenant) -> None:
    api, team = tenant.api, tenant.team_id
    assert api.team.update(team, "a new name").name == "a new name"
    assert {t.id: t.name for t in api.team.get_list()}[team] == "a new name"
    ws = api.workspace.update(tenant.workspace_id, name="renamed ws", description="what for")
    assert (ws.id, ws.name, ws.description) == (tenant.workspace_id, "renamed ws", "what for")
    other = api.workspace.create(team, "taken")
    with pytest.raises(ConflictError) as taken:
        api.workspace.update(other.id, name="renamed ws")
    assert taken.value.field == "name"
    with pytest.raises(BadRequestError) as nothing:
        api.workspace.update(other.id)
    assert nothing.value.field == "name"

    user = api.user.create(f"frank-{team}", "first-password")
    with Api(server.url, api.user.create_token("frank", user.id).token) as frank:
        assert frank.user.update(user.id, name="Frank").name == "Frank"
        with pytest.raises(BadRequestError) as short:
            frank.user.update(user.id, password="short")
        assert short.value.field == "password"
        frank.user.update(user.id, password="second-password")
    with Api(server.url, None) as anyone:
        assert anyone.user.login(f"frank-{team}", "second-password").token
    api.team.add_member(team, f"frank-{team}", "viewer")
    member = api.team.change_member_role(team, user.id, "developer")
    assert (member.user_id, member.role) == (user.id, "developer")
    with pytest.raises(ConflictError):
        api.team.change_member_role(team, api.user.me().id, "viewer")  # the only admin
    with pytest.raises(NotFoundError):
        api.team.change_member_role(team, 2**31 - 1, "viewer")

    async def go() -> None:
        async with AsyncApi(server.url, server.admin_token) as aapi:
            assert (await aapi.team.update(team, "async name")).name == "async name"
            renamed = await aapi.workspace.update(other.id, name="async ws")
            assert renamed.name == "async ws"
            assert (await aapi.user.update(user.id, name="F.")).name == "F."
            role = await aapi.team.change_member_role(team, user.id, "viewer")
            assert role.role == "viewer"

    asyncio.run(go())
