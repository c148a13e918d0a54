"""Only a deliberate stop of ``appyard up`` stops the apps.

``up`` or its agent killed outright (SIGKILL, as the OOM killer does) leaves the apps running
under their supervisors; the next ``up`` (or the agent ``up`` starts again) re-adopts them,
ships what they logged meanwhile, and they end ``finished`` with their whole log.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

import pytest
from dotenv import dotenv_values

from appyard.domain.status import Status
from appyard.sdk import Api
from tests.support import Up, alive, free_port, processes_mentioning, processes_of, wait_for

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="process checks read /proc"
)

#: prints a numbered line every 50 ms until the file named in its state exists (in its task
#: folder: a sandboxed app sees no other of the agent's), then "done"
TICKER = """\
import json, os, time
release = json.loads(os.environ["MODAL_STATE"])["release"]
i = 0
while not os.path.exists(release):
    print(f"tick {i}", flush=True)
    i += 1
    time.sleep(0.05)
print("done", flush=True)
"""


def _ticker(tmp_path: Path) -> Path:
    folder = tmp_path / "ticker"
    folder.mkdir()
    (folder / "config.json").write_text(
        json.dumps(
            {
                "name": "Ticker",
                "slug": "test/ticker",
                "main_script": "main.py",
                "modal_template_state": {"release": ""},
                "stop_grace_s": 2,
            }
        )
    )
    (folder / "main.py").write_text(TICKER)
    return folder


class Session:
    """One ticker session of an ``up``: started, checked alive, released, checked whole."""

    def __init__(self, env_file: Path, app: Path, home: Path) -> None:
        values = dotenv_values(env_file)
        self.address = str(values["SERVER_ADDRESS"])
        self.api = Api(self.address, values["API_TOKEN"])
        module_id = self.api.module.publish(app).module_id
        started = self.api.app.start(
            agent_id=int(values["AGENT_ID"] or 0),
            module_id=module_id,
            workspace_id=int(values["WORKSPACE_ID"] or 0),
            params={"release": "release"},
        )
        self.task_id = started.task_id
        self.home = home
        wait_for(lambda: self.api.task.logs(self.task_id), 60, "the app's first line")
        self.pids = processes_of(self.task_id, self.address)
        assert self.pids

    def still_runs(self) -> None:
        assert [p for p in self.pids if alive(p)], "the app died with up"

    def finish(self, env_file: Path) -> None:
        """Once lines flow again (re-adopted), let the app end; then check it ended
        ``finished`` with every line, in order."""
        api = Api(self.address, dotenv_values(env_file)["API_TOKEN"])
        shipped = len(api.task.logs(self.task_id, limit=None))
        wait_for(
            lambda: len(api.task.logs(self.task_id, limit=None)) > shipped + 5,
            60,
            "the re-adopted app's new lines",
        )
        (work,) = self.home.glob(f"agent-*/tasks/{self.task_id}/work")
        (work / "release").touch()
        assert api.app.wait(self.task_id, Status.FINISHED, 60, 1) is Status.FINISHED
        lines = [line.text for line in api.task.logs(self.task_id, limit=None)]
        ticks = lines[:-1]
        assert lines[-1] == "done", lines[-5:]
        assert ticks == [f"tick {i}" for i in range(len(ticks))], "a line lost or doubled"
        assert processes_of(self.task_id, self.address) == []
        api.close()
        self.api.close()


def _parent(entry: str) -> int:
    """The parent pid of a ``processes_mentioning`` entry (``"pid: cmdline"``)."""
    stat = Path(f"/proc/{entry.split(':')[0]}/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[1])


def _gone(up: Up, home: Path) -> None:
    """Wait until the killed up's server and agent have exited (they get a death signal)."""

    def only_apps_left() -> bool:
        return not [p for p in processes_mentioning(str(home)) if "appyard" in p.split(": ")[1]]

    wait_for(only_apps_left, 30, "the server and the agent of the killed up to exit")
    assert up.proc.wait(10) == -signal.SIGKILL


def test_apps_survive_a_killed_up_and_a_kept_stop(tmp_path: Path) -> None:
    home, env_file, port = tmp_path / "home", tmp_path / "appyard.env", free_port()
    app = _ticker(tmp_path)

    up = Up(home, env_file, port)
    first = Session(env_file, app, home)
    os.killpg(up.proc.pid, signal.SIGKILL)  # kill -KILL -- -PGID: up's whole process group
    _gone(up, home)
    first.still_runs()

    up = Up(home, env_file, port, args=["--keep-apps"])
    try:
        first.still_runs()
        first.finish(env_file)  # re-adopted: its whole log, and finished
        second = Session(env_file, app, home)
    finally:
        assert up.interrupt() == 0, up.output
    assert "leaving the running apps" in up.output
    # up says how its agent runs apps (bubblewrap is there: sandboxed, the default)
    assert "apps      each in a sandbox of its own (bubblewrap)" in up.output
    second.still_runs()  # --keep-apps: Ctrl-C left it running

    up = Up(home, env_file, port)
    try:
        second.finish(env_file)
    finally:
        assert up.interrupt() == 0, up.output
    assert processes_mentioning(str(home)) == [], up.output


def _child_of(up: Up, mark: str) -> int:
    found = [p for p in processes_mentioning(mark) if _parent(p) == up.proc.pid]
    assert len(found) == 1, found
    return int(found[0].split(":")[0])


def test_a_killed_agent_or_server_is_started_again(tmp_path: Path) -> None:
    home, env_file, port = tmp_path / "home", tmp_path / "appyard.env", free_port()
    up = Up(home, env_file, port)
    try:
        session = Session(env_file, _ticker(tmp_path), home)
        os.kill(_child_of(up, " agent run "), signal.SIGKILL)
        wait_for(lambda: "the agent exited with code -9" in up.output, 30, "up to notice")
        session.still_runs()
        os.kill(_child_of(up, " appyard.server "), signal.SIGKILL)
        wait_for(lambda: "the server exited with code -9" in up.output, 30, "up to notice")
        session.still_runs()
        session.finish(env_file)  # the new server, the new agent, the same app
    finally:
        assert up.interrupt() == 0, up.output
    assert processes_mentioning(str(home)) == [], up.output
