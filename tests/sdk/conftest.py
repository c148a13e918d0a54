"""SDK fixtures on the suite's real server (``server`` in ``tests/conftest.py``)."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from appyard.sdk import Api
from tests.sdk.helpers import PASCAL_CONFIG, FakeAgent, Tenant
from tests.support import ServerProc


@pytest.fixture(scope="module")
def pascal_app(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("pascal")
    (folder / "config.json").write_text(json.dumps(PASCAL_CONFIG))
    (folder / "main.py").write_text("print('exporting')\n")
    return folder


_counter = itertools.count(1)


@pytest.fixture
def tenant(server: ServerProc, pascal_app: Path) -> Iterator[Tenant]:
    api = Api(server.url, server.admin_token)
    n = next(_counter)
    team = api.team.create(f"team-{n}")
    space = api.workspace.create(team.id, "ws")
    agent = api.agent.create(team.id, f"agent-{n}")
    module_id = api.module.publish(pascal_app).module_id
    yield Tenant(api, team.id, space.id, agent.id, agent.token, module_id)
    api.close()


@pytest.fixture
def agent(server: ServerProc, tenant: Tenant) -> Iterator[FakeAgent]:
    fake = FakeAgent(server.url, tenant.agent_token)
    yield fake
    fake.close()
