"""The supervisor is a child subreaper: what left the app's group dies with the task too."""

from __future__ import annotations

import os
from pathlib import Path

from appyard.agent.state import TaskDir
from tests.agent.helpers import alive, app_texts, launch_snippet, new_task, wait_for, wait_gone

DAEMON = """
import subprocess, sys
daemon = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"],
                          start_new_session=True,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
print(daemon.pid)
"""


def _pids(td: TaskDir, n: int = 1) -> list[int]:
    wait_for(lambda: len(app_texts(td)) >= n, 15, "the app to print pids")
    return [int(t) for t in app_texts(td)[:n]]


def test_a_setsid_daemon_dies_when_the_app_exits(tmp_path: Path) -> None:
    td = new_task(tmp_path)
    handle = launch_snippet(td, DAEMON)
    assert handle.wait(15)
    info = td.exit_info()
    assert info is not None
    assert (info.exit_code, info.stop_requested, info.killed) == (0, False, False)
    (daemon,) = _pids(td)
    wait_gone(daemon)


def test_a_daemon_that_holds_stdout_is_killed_too(tmp_path: Path) -> None:
    td = new_task(tmp_path)
    handle = launch_snippet(
        td,
        """
        import subprocess, sys
        daemon = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"],
                                  start_new_session=True)
        print(daemon.pid)
        """,
    )
    assert handle.wait(15)
    info = td.exit_info()
    assert info is not None and info.exit_code == 0
    (daemon,) = _pids(td)
    wait_gone(daemon)


def test_a_setsid_daemon_dies_when_the_app_is_stopped(tmp_path: Path) -> None:
    td = new_task(tmp_path)
    handle = launch_snippet(td, DAEMON + "import time\nwhile True:\n    time.sleep(1)\n")
    (daemon,) = _pids(td)
    assert alive(daemon) and os.getsid(daemon) == daemon
    assert handle.stop()
    assert handle.wait(15)
    info = td.exit_info()
    assert info is not None and info.stop_requested
    assert handle.app_pid is not None
    wait_gone(handle.app_pid, daemon)


def test_a_double_fork_grandchild_dies_with_the_task(tmp_path: Path) -> None:
    td = new_task(tmp_path)
    handle = launch_snippet(
        td,
        """
        import os, sys, time
        r, w = os.pipe()
        child = os.fork()
        if child == 0:
            os.close(r)
            if os.fork() == 0:  # the grandchild: a daemon of its own session
                os.setsid()
                os.write(w, f"{os.getpid()}\\n".encode())
                os.close(w)
                os.closerange(0, 3)
                time.sleep(600)
                os._exit(0)
            os._exit(0)  # the child leaves: the grandchild is an orphan
        os.close(w)
        with os.fdopen(r) as f:
            grandchild = int(f.readline())
        os.waitpid(child, 0)
        print(grandchild)
        """,
    )
    assert handle.wait(15)
    info = td.exit_info()
    assert info is not None and info.exit_code == 0
    (grandchild,) = _pids(td)
    wait_gone(grandchild)
