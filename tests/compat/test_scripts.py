"""Scripts written for the reference SDK, with only their import switched to ``appyard.compat``,
run end to end against a live server and a real agent with the bundled apps."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
from pathlib import Path

from PIL import Image

import appyard as ay
from tests.e2e.conftest import Env

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = Path(__file__).parent / "scripts"
EXPORT = Path(ay.__file__).parent / "ecosystem" / "export-to-pascal-voc"


def _png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (32, 24), (10, 120, 200)).save(out, format="PNG")
    return out.getvalue()


def _project(env: Env, name: str) -> int:
    project = env.api.project.create(env.world.workspace_id, name)
    dataset = env.api.dataset.create(project.id, "train")
    env.api.image.upload_bytes(dataset.id, "a.png", _png())
    return project.id


def _run(env: Env, script: str, tmp_path: Path, **extra: str) -> subprocess.CompletedProcess[str]:
    run_env = env.world.env(AGENT_ID=str(env.agent_id), HOME=str(tmp_path), **extra)
    run_env.pop("TASK_ID", None)
    out = subprocess.run(
        [sys.executable, str(SCRIPTS / script)],
        cwd=REPO,
        env=run_env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    return out


def test_the_seed_tutorial_runs_on_the_compat_surface(env: Env, tmp_path: Path) -> None:
    module_id = env.world.admin.publish(EXPORT)["module_id"]
    project_id = _project(env, "tutorial")
    out = _run(env, "start_stop_app.py", tmp_path, PROJECT_ID=str(project_id))
    lines = out.stdout.splitlines()
    task_id = int(re.search(r"App is started, task_id =  (\d+)", out.stdout).group(1))  # type: ignore[union-attr]
    info = env.api.task.get_info_by_id(task_id)
    params = {
        "pascalContourThickness": 3,
        "trainSplitCoef": 0.8,
        "addPrefixToImages": True,
        "projectId": project_id,
    }
    assert lines[0] == "Start app:  Export to Pascal VOC"
    start = lines.index("App input arguments with predefined default values:")
    assert "\n".join(lines[start + 1 : start + 7]) == json.dumps(params, indent=4)
    assert (
        f"SessionInfo(task_id={task_id}, user_id={info['user_id']}, module_id={module_id}, "
        f"app_id={info['app_id']}, details={{}})"
    ) in lines
    assert "Task status:  finished" in lines
    (session_line,) = [x for x in lines if x.startswith("SessionInfo(") and "details={}" not in x]
    # the session's details carry the reference's keys beside ours
    assert "'meta': {'app': {'id': " in session_line
    assert "'sessionToken': " in session_line
    assert "'status': 'finished'" in session_line


def test_a_reference_style_export_script_reads_the_output_and_lists_sessions(
    env: Env, tmp_path: Path
) -> None:
    env.world.admin.publish(EXPORT)
    project_id = _project(env, "exported")
    data_dir = tmp_path / "data"
    out = _run(
        env,
        "run_export_and_download.py",
        tmp_path,
        PROJECT_ID=str(project_id),
        SLY_APP_DATA_DIR=str(data_dir),
        ENV="development",
    )
    lines = out.stdout.splitlines()
    assert any("INFO Connected" in x and '"team": "team-' in x for x in lines), out.stdout
    assert "agent status: Status.RUNNING" in lines
    assert "status: finished" in lines
    assert "app: Export to Pascal VOC" in lines
    assert "session name: export from script" in lines
    title = next(x for x in lines if x.startswith("output title: ")).removeprefix("output title: ")
    assert title.endswith("_pascal_voc.tar")
    assert "output is a download: True" in lines
    assert "downloaded bytes > 0: True" in lines
    assert (data_dir / title).is_file()
    sessions = [x for x in lines if x.startswith("session: ")]
    assert len(sessions) == 1 and sessions[0].endswith("export from script finished")
    task_id = int(sessions[0].split()[1])
    assert f"finished tasks in workspace: [{task_id}]" in lines
