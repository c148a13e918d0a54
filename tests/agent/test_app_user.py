"""Without bubblewrap, an agent running as root runs each app as an unprivileged user.

A real server and agent, the real ``setpriv``, a real app (``apps/probe``) that tries to read
the agent's and ``up``'s secrets and another task's folder. The agent runs on an interpreter
that user can execute (a venv of the system's Python in a folder it can pass through, seeing
this project's packages), as an agent set up for this mode would.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.agent.test_agent_server import _online, _start, _wait
from tests.agent.test_sandbox import PROBE, _isolation, _try_paths
from tests.support import World, wait_for

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0, reason="running apps as another user needs an agent running as root"
)

SYSTEM_PYTHON = shutil.which("python3.11", path="/usr/bin:/bin") or "/usr/bin/python3"


@pytest.fixture
def open_root() -> Iterator[Path]:
    """A folder any user may pass through (not list), outside pytest's private tmp."""
    root = Path(tempfile.mkdtemp(prefix="appyard-app-user-", dir="/tmp"))
    root.chmod(0o711)
    yield root
    shutil.rmtree(root, ignore_errors=True)


def _python_for_app_user(root: Path) -> str:
    """A venv of the system's Python that imports what this project's interpreter does."""
    venv = root / "venv"
    subprocess.run([SYSTEM_PYTHON, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-c",
            "import sysconfig; print(sysconfig.get_path('purelib'))",
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    ours = sysconfig.get_path("purelib")
    Path(site, "appyard-test.pth").write_text(f"import site; site.addsitedir({ours!r})\n")
    return str(venv / "bin" / "python")


def test_an_app_runs_as_its_own_user_and_reads_nothing_of_the_agent(
    world: World, open_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not os.access(sys.executable, os.X_OK) or not Path(SYSTEM_PYTHON).exists():
        pytest.fail(f"no system Python at {SYSTEM_PYTHON} for the app user")
    # a PATH with setpriv but no bubblewrap
    bin_dir = open_root / "bin"
    bin_dir.mkdir()
    (bin_dir / "setpriv").symlink_to(shutil.which("setpriv") or "/usr/bin/setpriv")
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.delenv("APPYARD_AGENT_SANDBOX", raising=False)
    # the agent's HOME as `appyard up` leaves it
    home = open_root / "home"
    (home / ".appyard").mkdir(parents=True)
    secrets = [home / ".appyard" / "admin-token", home / ".appyard" / "up.json"]
    for path in secrets:
        path.write_text("secret")
        path.chmod(0o600)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("APPYARD_HOME", str(home / ".appyard"))

    agent_id, token = world.new_agent_token("as-user")
    agent = world.start_agent(
        token, name="as-user", work_dir=open_root / "agent", python=_python_for_app_user(open_root)
    )
    wait_for(lambda: _online(world, agent_id), 60, f"agent online:\n{agent.log_text}")
    assert _isolation(world, agent_id) == "user", agent.log_text
    assert "each runs as the unprivileged user" in agent.log_text
    module_id = world.admin.publish(PROBE)["module_id"]

    other = _start(world, module_id, agent_id, sleep_s=60)
    _wait(world, other, until="started")
    other_work = agent.work_dir / "tasks" / str(other) / "work"
    wait_for(other_work.is_dir, 15, "the other task's folder")

    paths = [
        *map(str, secrets),
        str(agent.work_dir / "tasks"),
        str(agent.work_dir / "tasks" / str(other) / "log.jsonl"),
        str(agent.work_dir / "cache" / "releases"),
        str(world.server.home),
    ]
    tid, said, seen = _try_paths(world, module_id, agent_id, paths)
    leaked = {p: s for p, s in seen.items() if "error" not in s}
    assert leaked == {}, leaked
    (me,) = [s for s in said if "home" in s]
    assert me["home"] == str(agent.work_dir / "tasks" / str(tid) / "home")
    assert me["cwd"] == str(agent.work_dir / "tasks" / str(tid) / "work")
    assert world.admin.ok("GET", f"/tasks/{tid}")["outputs"] == {"reached": True}
    # its folders are its user's, and no one else's
    st = (agent.work_dir / "tasks" / str(tid) / "work").stat()
    assert st.st_uid != 0 and st.st_mode & 0o077 == 0

    # the stop protocol reaches it as for any app
    world.admin.ok("POST", f"/tasks/{other}/stop")
    assert _wait(world, other)["status"] == "stopped"
