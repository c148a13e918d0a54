"""The worked example of ``docs/apps.md`` runs as written: its ``config.json`` and ``main.py``
are taken from the page, published, and run on a real agent on a team-files folder."""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

import pytest

import appyard as ay
from appyard.errors import BadRequestError
from tests.e2e.conftest import Env

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "apps.md"


def _block(label: str, lang: str) -> str:
    """The fenced ``lang`` block that follows the line naming ``label`` in the guide."""
    text = GUIDE.read_text(encoding="utf-8")
    found = re.search(rf"`{re.escape(label)}`:\n```{lang}\n(.*?)\n```", text, re.S)
    assert found, f"docs/apps.md has no {lang} block after `{label}`"
    return found.group(1) + "\n"


def test_the_guide_example_runs(env: Env, tmp_path: Path) -> None:
    app = tmp_path / "folder-report"
    app.mkdir()
    (app / "config.json").write_text(_block("folder-report/config.json", "json"))
    (app / "main.py").write_text(_block("folder-report/main.py", "python"))
    module_id = env.world.admin.publish(app)["module_id"]

    api, team_id = env.api, env.world.team_id
    for name, size in (("a.txt", 3), ("big.bin", 50), ("sub/c.txt", 10)):
        src = tmp_path / name.replace("/", "_")
        src.write_bytes(b"x" * size)
        api.file.upload(team_id, str(src), f"/guide/{name}")

    info = api.app.get_ecosystem_module_info(module_id)
    params = info.get_arguments(files_folder="/guide")
    assert params == {"recursive": True, "sortBy": "name", "folder": "/guide"}
    start = {"agent_id": env.agent_id, "workspace_id": env.world.workspace_id}
    for bad in ({}, {**params, "sortBy": "date"}, {**params, "recursive": "yes"}):
        with pytest.raises(BadRequestError):
            api.app.start(**start, module_id=module_id, params=bad)

    session = api.app.start(**start, module_id=module_id, params={**params, "sortBy": "size"})
    assert api.app.wait(session.task_id, ay.Status.FINISHED, 1, 120) is ay.Status.FINISHED
    outputs = api.task.get(session.task_id).outputs
    report = f"/guide/report-{session.task_id}.csv"
    assert outputs == {"report": {"type": "team_file", "path": report}, "files": 3}
    local = tmp_path / "report.csv"
    api.file.download(team_id, report, str(local))
    rows = list(csv.reader(io.StringIO(local.read_text())))
    assert rows[0] == ["path", "size", "modified_at"]
    assert [(r[0], int(r[1])) for r in rows[1:]] == [
        ("/guide/a.txt", 3),
        ("/guide/sub/c.txt", 10),
        ("/guide/big.bin", 50),
    ]
