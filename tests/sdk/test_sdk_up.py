"""``appyard up``: a whole local appyard in one command; Ctrl-C leaves nothing running."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from dotenv import dotenv_values

from appyard.domain.status import Status
from appyard.sdk import Api
from tests.support import Up, free_port, processes_mentioning, wait_for

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="process-group checks read /proc"
)


def test_up_runs_apps_stops_everything_and_keeps_its_state(tmp_path: Path) -> None:
    home, env_file, port = tmp_path / "home", tmp_path / "appyard.env", free_port()
    sleeper = tmp_path / "sleeper"
    sleeper.mkdir()
    marker = f"sleeper-{port}"
    (sleeper / "config.json").write_text(
        json.dumps({"name": "Sleeper", "slug": "test/sleeper", "main_script": "main.py"})
    )
    (sleeper / "main.py").write_text(f"import time  # {marker}\ntime.sleep(600)\n")

    up = Up(home, env_file, port)
    try:
        values = dotenv_values(env_file)
        assert values["SERVER_ADDRESS"] == f"http://127.0.0.1:{port}"
        assert {"API_TOKEN", "TEAM_ID", "WORKSPACE_ID", "AGENT_ID", "PROJECT_ID"} <= set(values)
        assert f"http://127.0.0.1:{port}/docs" in up.output
        api = Api(values["SERVER_ADDRESS"], values["API_TOKEN"])
        # the demo images project, made by the bundled create-demo-project app
        project = api.project.get_info_by_id(int(values["PROJECT_ID"] or 0))
        assert project.workspace_id == int(values["WORKSPACE_ID"] or 0)
        assert project.images_count > 0 and project.datasets_count > 1
        team_id = int(values["TEAM_ID"] or 0)
        agents = api.agent.get_list(team_id)
        assert [a.id for a in agents] == [int(values["AGENT_ID"] or 0)]
        module_id = api.module.publish(sleeper).module_id
        session = api.app.start(
            agent_id=int(values["AGENT_ID"] or 0),
            module_id=module_id,
            workspace_id=int(values["WORKSPACE_ID"] or 0),
        )
        assert api.app.wait(session.task_id, Status.STARTED, 60, 1) is Status.STARTED
        wait_for(lambda: processes_mentioning(str(home)), 10, "the app's processes")
        api.close()
    finally:
        code = up.interrupt()
    assert code == 0, up.output
    assert "stopping the agent" in up.output
    assert processes_mentioning(str(home)) == [], up.output

    # again, on the same home: same admin, same ids; the app was stopped, not lost
    first = dotenv_values(env_file)
    up = Up(home, env_file, port)
    try:
        again = dotenv_values(env_file)
        assert again == first
        api = Api(again["SERVER_ADDRESS"], again["API_TOKEN"])
        record = api.task.get(session.task_id)
        assert record.status is Status.STOPPED, (record.error, up.output)
        assert len(api.team.get_list()) == 1
        assert len(api.project.get_list(int(again["WORKSPACE_ID"] or 0))) == 1  # made once
        api.close()
    finally:
        assert up.interrupt(signal.SIGTERM) == 0, up.output
    assert processes_mentioning(str(home)) == []


def test_up_refuses_a_busy_port(tmp_path: Path) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        out = subprocess.run(
            [sys.executable, "-m", "appyard.cli", "up", "--port", str(port)],
            env={**os.environ, "APPYARD_HOME": str(tmp_path / "h"), "COLUMNS": "200"},
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert out.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in out.stderr
