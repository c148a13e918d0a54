"""The SDK's calls for running teams, sync and async, against the real server."""

from __future__ import annotations

import asyncio

import pytest

from appyard.errors import AuthenticationError, ConflictError
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
