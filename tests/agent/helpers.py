"""Helpers for the agent tests: launch a Python snippet as an app under a real supervisor."""

from __future__ import annotations

import json
import os
import sys
import textwrap
from pathlib import Path
from typing import Any

from appyard.agent import proc
from appyard.agent.handle import AppHandle
from appyard.agent.launch import launch
from appyard.agent.launcher import Launcher
from appyard.agent.state import TaskDir, TaskState, WorkDir
from tests.support import alive, wait_for

__all__ = ["alive", "launch_snippet", "log_lines", "new_task", "wait_for", "wait_gone"]


def new_task(root: Path, task_id: int = 1) -> TaskDir:
    wd = WorkDir(root)
    wd.create()
    td = wd.task(task_id)
    td.path.mkdir(parents=True, exist_ok=True)
    return td


def launch_snippet(
    td: TaskDir, code: str, grace_s: float = 5.0, launcher: Launcher | None = None
) -> AppHandle:
    """Run ``code`` with this interpreter as the task's app; state.json as the agent writes it.

    With a ``launcher``, through it (its warm supervisor, if it has one); else a cold launch.
    """
    state = TaskState(task_id=td.task_id, boot_id=proc.boot_id(), stop_grace_s=grace_s)

    def on_supervisor(pid: int, start: int | None) -> None:
        state.supervisor_pid, state.supervisor_start = pid, start
        td.save(state)

    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    argv = [sys.executable, "-c", textwrap.dedent(code)]
    start = launcher.launch if launcher is not None else launch
    handle = start(td, argv, env, grace_s, on_supervisor)
    state.app_pid, state.app_start = handle.app_pid, handle.app_start
    td.save(state)
    return handle


def log_lines(td: TaskDir) -> list[dict[str, Any]]:
    if not td.log.exists():
        return []
    return [json.loads(line) for line in td.log.read_text().splitlines()]


def app_texts(td: TaskDir) -> list[str]:
    """Lines of the app itself (not the supervisor's own notes)."""
    return [r["text"] for r in log_lines(td) if r.get("src") != "supervisor"]


def wait_gone(*pids: int, timeout: float = 15.0) -> None:
    for pid in pids:

        def gone(pid: int = pid) -> bool:
            return not alive(pid)

        wait_for(gone, timeout, f"process {pid} to be gone")
