"""``appyard up``: a whole local appyard in one command; Ctrl-C leaves nothing running."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from dotenv import dotenv_values

from appyard.domain.status import Status
from appyard.sdk import Api
from tests.support import free_port, wait_for

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="process-group checks read /proc"
)


class Up:
    """``appyard up`` as a child process with its output collected line by line."""

    def __init__(self, home: Path, env_file: Path, port: int) -> None:
        env = {k: v for k, v in os.environ.items() if k not in ("SERVER_ADDRESS", "API_TOKEN")}
        env.update(
            APPYARD_HOME=str(home),
            APPYARD_ENV_FILE=str(env_file),
            PYTHONUNBUFFERED="1",
            COLUMNS="200",
        )
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "appyard.cli", "up", "--port", str(port), "--slots", "2"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()
        wait_for(self._up, 90, "appyard up to be ready")

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def _up(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError("appyard up exited:\n" + "\n".join(self.lines))
        return any("appyard is up" in line for line in self.lines)

    def interrupt(self, sig: int = signal.SIGINT) -> int:
        self.proc.send_signal(sig)
        return self.proc.wait(90)

    @property
    def output(self) -> str:
        return "\n".join(self.lines)


def processes_mentioning(text: str) -> list[str]:
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if text in cmdline:
            found.append(f"{pid}: {cmdline}")
    return found


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
        assert {"API_TOKEN", "TEAM_ID", "WORKSPACE_ID", "AGENT_ID"} <= set(values)
        assert f"http://127.0.0.1:{port}/docs" in up.output
        api = Api(values["SERVER_ADDRESS"], values["API_TOKEN"])
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
