"""The seed's tutorial, as examples/start_stop_app.py, against a live server and a real agent."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from tests.e2e.conftest import Env
from tests.support import APPS

REPO = Path(__file__).resolve().parents[2]


def test_the_tutorial_prints_what_the_seed_prints(env: Env, tmp_path: Path) -> None:
    module_id = env.world.admin.publish(APPS / "export-like")["module_id"]
    project_id = env.api.project.create(env.world.workspace_id, "tutorial").id
    run_env = env.world.env(
        AGENT_ID=str(env.agent_id), PROJECT_ID=str(project_id), HOME=str(tmp_path)
    )
    out = subprocess.run(
        [sys.executable, "examples/start_stop_app.py"],
        cwd=REPO,
        env=run_env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert out.returncode == 0, out.stderr
    task_id = int(re.search(r"App is started, task_id =  (\d+)", out.stdout).group(1))  # type: ignore[union-attr]
    info = env.api.task.get_info_by_id(task_id)
    params = {
        "pascalContourThickness": 3,
        "trainSplitCoef": 0.8,
        "addPrefixToImages": True,
        "projectId": project_id,
    }
    expected = [
        "Start app:  Export to Pascal VOC",
        "List of available app arguments for developers (like --help in terminal):",
        "App 'Export to Pascal VOC' has additional options that can be configured manually "
        "in modal dialog window before running app. You can change them or keep defaults: ",
        *json.dumps(
            {"pascalContourThickness": 3, "trainSplitCoef": 0.8, "addPrefixToImages": True},
            sort_keys=True,
            indent=4,
        ).splitlines(),
        "App has to be started from the context menus:",
        "images_project : Context menu of images project. Target value is project id.",
        "images_dataset : Context menu of images dataset. Target value is dataset id.",
        "It is needed to call get_arguments method with defined target argument "
        "(pass one of the values above).",
        "App input arguments with predefined default values:",
        *json.dumps(params, indent=4).splitlines(),
        f"App is started, task_id =  {task_id}",
        f"SessionInfo(task_id={task_id}, user_id={info['user_id']}, module_id={module_id}, "
        f"app_id={info['app_id']}, details={{}})",
        "Task status:  finished",
    ]
    lines = out.stdout.splitlines()
    assert lines[: len(expected)] == expected
    # then the finished sessions of the app, newest first: ours is the only one
    (session_line,) = lines[len(expected) :]
    assert session_line.startswith(
        f"SessionInfo(task_id={task_id}, user_id={info['user_id']}, module_id={module_id}, "
        f"app_id={info['app_id']}, details={{"
    )
    assert "'status': 'finished'" in session_line
    # the app really ran, with the options changed as the tutorial changes them
    logs = [line.text for line in env.api.task.logs(task_id)]
    assert logs[0] == f"project {project_id}"
    state = json.loads(logs[1].removeprefix("state "))
    assert state == {**params, "trainSplitCoef": 0.7, "pascalContourThickness": 2}
    assert info["name"] == "custom session name"
