"""``appyard pipeline ...`` as a real process against a real server and agent, and the example
pipelines of ``examples/pipelines/`` end to end on the bundled apps."""

from __future__ import annotations

import importlib.util
import io
import json
import re
import subprocess
import sys
import tarfile
from pathlib import Path
from types import ModuleType

import pytest

from appyard.domain.pipeline import RunState, StepState
from appyard.errors import PipelineRunFailed
from appyard.schemas.pipeline_runs import RunInfo
from appyard.sdk.pipeline_api import task_ids
from tests.e2e.conftest import Env

ROOT = Path(__file__).resolve().parents[2]
ECOSYSTEM = ROOT / "src" / "appyard" / "ecosystem"
EXAMPLES = ROOT / "examples" / "pipelines"
RUN_TIMEOUT_S = 300.0


def appyard(
    env: Env, *args: str, timeout: float = RUN_TIMEOUT_S
) -> subprocess.CompletedProcess[str]:
    """The CLI as the team's admin, in a wide terminal without colours."""
    return subprocess.run(
        [sys.executable, "-m", "appyard.cli", *args],
        env=env.world.env(COLUMNS="250", NO_COLOR="1", APPYARD_ENV_FILE="/nonexistent/a.env"),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def make_images() -> ModuleType:
    """``examples/pipelines/make_images.py``, the script the examples' README runs."""
    spec = importlib.util.spec_from_file_location("make_images", EXAMPLES / "make_images.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def publish(env: Env, *apps: str) -> None:
    for app in apps:
        env.world.admin.publish(ECOSYSTEM / app)


def run_id_of(output: str) -> int:
    found = re.search(r"Started run (\d+)", output)
    assert found, output
    return int(found.group(1))


def rows(output: str) -> dict[str, list[str]]:
    """The lines of a steps table by step id (its first cell)."""
    out: dict[str, list[str]] = {}
    for line in output.splitlines():
        cells = [c.strip() for c in re.split(r"[│┃|]", line) if c.strip()]
        if cells and re.fullmatch(r"[A-Za-z0-9_-]+", cells[0]) and cells[0] != "STEP":
            out.setdefault(cells[0], cells)
    return out


# -- validate ----------------------------------------------------------------------------------


def test_validate_checks_the_file_here_and_against_the_catalog(env: Env, tmp_path: Path) -> None:
    for example in sorted(EXAMPLES.glob("*.yaml")):
        out = appyard(env, "pipeline", "validate", str(example))
        assert out.returncode == 0, out.stderr
        assert "ok" in out.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "name: bad\n"
        "steps:\n"
        "  - {id: a, app: appyard/hello, needs: [b]}\n"
        "  - {id: b, app: appyard/hello, needs: [a], params: {name: '${inputs.nope}'}}\n"
    )
    out = appyard(env, "pipeline", "validate", str(bad))
    assert out.returncode == 1
    assert "2 problems" in out.stderr
    assert "steps[0].needs: the needs go round: a -> b -> a" in out.stderr
    assert "steps[1].params.name" in out.stderr and "'nope'" in out.stderr
    not_yaml = tmp_path / "broken.yaml"
    not_yaml.write_text("name: x\nsteps: [\n")
    out = appyard(env, "pipeline", "validate", str(not_yaml))
    assert out.returncode == 1 and "not valid YAML" in out.stderr

    # --server: the apps as the team's catalog has them
    publish(env, "hello")
    fits = tmp_path / "fits.yaml"
    fits.write_text("name: fits\nsteps:\n  - {id: a, app: appyard/hello, params: {count: 2}}\n")
    assert appyard(env, "pipeline", "validate", "--server", str(fits)).returncode == 0
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text(
        "name: wrong\n"
        "steps:\n"
        "  - {id: a, app: appyard/hello, params: {count: many}}\n"
        "  - {id: b, app: nobody/nothing}\n"
    )
    local = appyard(env, "pipeline", "validate", str(wrong))
    assert local.returncode == 0  # nothing the document alone can tell
    out = appyard(env, "pipeline", "validate", "--server", str(wrong))
    assert out.returncode == 1, out.stdout
    assert "steps[0].params.count" in out.stderr
    assert "steps[1].app" in out.stderr and "nobody/nothing" in out.stderr


# -- run, show, ls, runs -----------------------------------------------------------------------


def test_run_wait_shows_each_step_and_exits_by_the_end(env: Env) -> None:
    publish(env, "hello")
    out = appyard(
        env,
        "pipeline",
        "run",
        str(EXAMPLES / "fan-out.yaml"),
        "--input",
        'names=["x","y"]',
        "--input",
        "count=1",
        "--wait",
    )
    assert out.returncode == 0, out.stdout + out.stderr
    run_id = run_id_of(out.stdout)
    table = rows(out.stdout)
    assert set(table) >= {"hello", "shout", "each", "done"}
    for step in ("hello", "shout", "each", "done"):
        assert "finished" in table[step], table[step]
    assert "2/2 done" in " ".join(table["each"])
    run = env.api.pipeline.get_run(run_id)
    assert run.status is RunState.FINISHED
    assert run.inputs == {"names": ["x", "y"], "count": 1}

    # show: the graph in the order it runs, with needs, states and task ids
    out = appyard(env, "pipeline", "show", str(run_id))
    assert out.returncode == 0, out.stderr
    shown = rows(out.stdout)
    assert list(shown)[:4] == ["hello", "shout", "each", "done"]
    assert shown["each"][1] == "hello, shout"
    assert shown["done"][1] == "each"
    for info in run.steps:
        for tid in task_ids(info):
            assert str(tid) in " ".join(shown[info.id])
    as_json = json.loads(appyard(env, "pipeline", "show", str(run_id), "--json").stdout)
    assert as_json["id"] == run_id and as_json["status"] == "finished"

    out = appyard(env, "pipeline", "runs")
    assert out.returncode == 0 and str(run_id) in out.stdout and "fan-out" in out.stdout
    out = appyard(env, "pipeline", "runs", "--status", "error")
    assert out.returncode == 0 and "fan-out" not in out.stdout
    out = appyard(env, "pipeline", "ls")
    assert out.returncode == 0 and "fan-out" in out.stdout

    # a saved pipeline runs by its id
    saved = env.api.pipeline.list(env.world.team_id, name="fan-out")[0]
    out = appyard(env, "pipeline", "run", str(saved.id), "--input", "names=[]", "--wait")
    assert out.returncode == 0, out.stdout + out.stderr


def test_run_wait_exits_1_when_a_step_fails(env: Env, tmp_path: Path) -> None:
    publish(env, "hello")
    failing = tmp_path / "failing.yaml"
    failing.write_text(
        "name: failing\n"
        "steps:\n"
        "  - {id: work, app: tests/worker, params: {exit_code: 4}, retries: {limit: 1}}\n"
        "  - {id: after, app: appyard/hello, needs: [work]}\n"
    )
    out = appyard(env, "pipeline", "run", str(failing), "--wait")
    assert out.returncode == 1, out.stdout + out.stderr
    table = rows(out.stdout)
    assert "error" in table["work"] and table["work"][4] == "2"  # two attempts
    assert "skipped" in table["after"] and "upstream_failed" in table["after"]
    run_id = run_id_of(out.stdout)
    show = rows(appyard(env, "pipeline", "show", str(run_id)).stdout)
    assert "upstream_failed" in show["after"]
    # a refused document: each problem on its line, exit 1, no run
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\nsteps:\n  - {id: a, app: appyard/hello, params: {count: x}}\n")
    out = appyard(env, "pipeline", "run", str(bad))
    assert out.returncode == 1 and "steps[0].params.count" in out.stderr
    assert "Started" not in out.stdout


def test_stop_and_resume_from_the_cli(env: Env, tmp_path: Path) -> None:
    long = tmp_path / "long.yaml"
    long.write_text(
        "name: long\n"
        "steps:\n"
        "  - {id: quick, app: tests/worker, params: {lines: 1}}\n"
        "  - {id: slow, app: tests/worker, needs: [quick], params: {sleep_s: 300}}\n"
        "  - {id: after, app: tests/worker, needs: [slow]}\n"
    )
    out = appyard(env, "pipeline", "run", str(long))
    assert out.returncode == 0, out.stderr
    run_id = run_id_of(out.stdout)
    assert f"appyard pipeline show {run_id} --follow" in out.stdout

    def slow_runs(run: RunInfo) -> bool:
        return bool(task_ids(run.steps[1]))

    for snapshot in env.api.pipeline.watch(run_id):
        if slow_runs(snapshot):
            break
    out = appyard(env, "pipeline", "resume", str(run_id))
    assert out.returncode == 1 and "error:" in out.stderr  # a running run does not resume
    out = appyard(env, "pipeline", "stop", str(run_id))
    assert out.returncode == 0 and f"Run {run_id}:" in out.stdout
    out = appyard(env, "pipeline", "show", str(run_id), "--follow")
    assert out.returncode == 2, out.stdout  # stopped
    table = rows(out.stdout)
    assert "finished" in table["quick"] and "stopped" in table["slow"]
    assert "run_stopped" in table["after"]

    out = appyard(env, "pipeline", "resume", str(run_id))
    assert out.returncode == 0, out.stderr
    for snapshot in env.api.pipeline.watch(run_id):
        if len(task_ids(snapshot.steps[1])) == 2:
            break
    run = env.api.pipeline.get_run(run_id)
    assert len(task_ids(run.steps[0])) == 1  # the finished step did not run again
    assert appyard(env, "pipeline", "stop", str(run_id)).returncode == 0
    with pytest.raises(PipelineRunFailed):
        env.api.pipeline.wait(run_id, RUN_TIMEOUT_S)


# -- the examples on the bundled apps ----------------------------------------------------------


def _archive_names(env: Env, task_id: int, tmp: Path) -> list[str]:
    output = env.api.task.get(task_id).outputs["archive"]
    local = tmp / f"{task_id}.tar"
    env.api.file.download(env.world.team_id, output["path"], local)
    with tarfile.open(fileobj=io.BytesIO(local.read_bytes())) as tar:
        return [m.name for m in tar.getmembers() if m.isfile()]


def test_import_and_export_example_end_to_end(env: Env, tmp_path: Path) -> None:
    publish(env, "import-images", "export-to-pascal-voc")
    made = make_images().upload_images(env.api, env.world.team_id, "/incoming/cats")
    out = appyard(env, "pipeline", "run", str(EXAMPLES / "import-and-export.yaml"), "--wait")
    assert out.returncode == 0, out.stdout + out.stderr
    run = env.api.pipeline.get_run(run_id_of(out.stdout))
    states = {s.id: s.state for s in run.steps}
    assert states == dict.fromkeys(("import", "export", "per-dataset"), StepState.FINISHED)
    imported, export, per_dataset = run.steps
    assert isinstance(imported.outputs, dict)
    project_id, dataset_ids = imported.outputs["project_id"], imported.outputs["dataset_ids"]
    project = env.api.project.get_info_by_id(project_id)
    assert (project.name, project.images_count) == ("cats", made)
    assert [d.id for d in env.api.dataset.get_list(project_id)] == sorted(dataset_ids)
    assert len(dataset_ids) == 2
    # the whole project once, and each dataset on its own
    (export_task,) = task_ids(export)
    assert env.api.task.get(export_task).params["state"]["trainSplitCoef"] == 0.8
    whole = [n for n in _archive_names(env, export_task, tmp_path) if n.endswith(".jpg")]
    assert len(whole) == made
    assert per_dataset.items is not None and per_dataset.items.finished == 2
    parts = [
        len([n for n in _archive_names(env, t, tmp_path) if n.endswith(".jpg")])
        for t in task_ids(per_dataset)
    ]
    assert sorted(parts) == [3, 3]


def test_retry_and_resume_example_end_to_end(env: Env) -> None:
    publish(env, "hello", "import-images", "export-to-pascal-voc")
    images = make_images()
    images.upload_images(env.api, env.world.team_id, "/incoming/late", broken=True)
    out = appyard(env, "pipeline", "run", str(EXAMPLES / "retry-and-resume.yaml"), "--wait")
    assert out.returncode == 1, out.stdout + out.stderr
    run = env.api.pipeline.get_run(run_id_of(out.stdout))
    assert run.status is RunState.ERROR
    greet, imported, export = run.steps
    assert greet.state is StepState.FINISHED
    assert imported.state is StepState.ERROR and len(imported.attempts) == 3
    assert export.state is StepState.SKIPPED and export.reason == "upstream_failed"
    greet_tasks, failed_tasks = task_ids(greet), task_ids(imported)
    assert len(set(failed_tasks)) == 3
    log = [line.text for line in env.api.task.logs(failed_tasks[-1])]
    assert any("/incoming/late/outdoor/cat-3.png.json" in line for line in log), log
    assert "error" in rows(out.stdout)["import"]

    images.upload_images(env.api, env.world.team_id, "/incoming/late")
    out = appyard(env, "pipeline", "resume", str(run.id), "--wait")
    assert out.returncode == 0, out.stdout + out.stderr
    run = env.api.pipeline.get_run(run.id)
    assert {s.id: s.state for s in run.steps} == dict.fromkeys(
        ("greet", "import", "export"), StepState.FINISHED
    )
    greet, imported, export = run.steps
    assert task_ids(greet) == greet_tasks  # not run again
    assert task_ids(imported)[:3] == failed_tasks and len(task_ids(imported)) == 4
    assert isinstance(imported.outputs, dict) and "project_id" in imported.outputs
