"""``api.workspace.get_info_by_id`` (``GET /workspaces/{id}``), sync and async, against a real
server."""

from __future__ import annotations

import asyncio

import pytest

import appyard as ay
from appyard.errors import NotFoundError
from appyard.schemas.accounts import WorkspaceInfo
from tests.sdk.helpers import Tenant
from tests.support import ServerProc


def test_a_workspace_by_its_id(server: ServerProc, tenant: Tenant) -> None:
    api = tenant.api
    got = api.workspace.get_info_by_id(tenant.workspace_id)
    assert isinstance(got, WorkspaceInfo)
    assert (got.id, got.team_id, got.name) == (tenant.workspace_id, tenant.team_id, "ws")
    assert got in api.workspace.get_list(tenant.team_id)
    with pytest.raises(NotFoundError) as missing:
        api.workspace.get_info_by_id(2**31 - 1)
    assert missing.value.field == "workspace_id"

    async def from_async() -> WorkspaceInfo:
        async with ay.AsyncApi(server.url, server.admin_token) as aapi:
            return await aapi.workspace.get_info_by_id(tenant.workspace_id)

    assert asyncio.run(from_async()) == got
