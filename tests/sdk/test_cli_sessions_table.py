"""``appyard app sessions``'s table at the widths of real terminals (no server needed)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from rich.console import Console

from appyard.cli._common import fmt_short_time
from appyard.cli.app_cmd import sessions_table
from appyard.domain.status import Status
from appyard.schemas.tasks import TaskInfo

NOW = datetime.now(UTC)


def _task(task_id: int, status: Status, created_at: datetime, **extra: Any) -> TaskInfo:
    fields: dict[str, Any] = {
        "id": task_id,
        "team_id": 1,
        "workspace_id": 1,
        "user_id": 1,
        "module_id": 12,
        "app_id": 3,
        "release_id": 4,
        "version": "1.2.3",
        "agent_id": 2,
        "name": "run-from-python",
        "description": "",
        "status": status,
        "params": {},
        "log_level": "info",
        "attempt": 1,
        "exit_code": None,
        "error": None,
        "progress": None,
        "outputs": {},
        "created_at": created_at,
        "consumed_at": None,
        "started_at": None,
        "terminating_at": None,
        "ended_at": None,
        "updated_at": created_at,
    }
    return TaskInfo.model_validate({**fields, **extra})


TASKS = [
    _task(
        1234567,
        Status.STARTED,
        NOW - timedelta(seconds=5),
        name="export-to-pascal-voc-with-a-rather-long-session-name",
        version="2024.11.0-rc.1",
        ready=True,
        gpus=[{"index": 0}, {"index": 1}],
        progress={"current": 120, "total": 1000},
        usage={
            "sampled_at": NOW,
            "cpu_percent": 187.4,
            "memory_mb": 1536.0,
            "gpu_memory_mb": 2048.0,
            "gpu_percent": 3.0,
        },
    ),
    _task(
        1234566,
        Status.TERMINATING,
        NOW - timedelta(days=2),
        usage={"sampled_at": NOW, "cpu_percent": 5.0, "memory_mb": 350.0},
    ),
    _task(1234565, Status.FINISHED, NOW - timedelta(days=400)),
    _task(1234564, Status.QUEUED, NOW - timedelta(hours=30), agent_id=None),
]


def _render(width: int) -> list[str]:
    console = Console(width=width, no_color=True, highlight=False)
    with console.capture() as out:
        console.print(sessions_table(TASKS, width))
    return out.get().splitlines()


@pytest.mark.parametrize("width", [80, 100, 120, 140, 200])
def test_each_row_keeps_its_id_and_whole_time_on_one_line(width: int) -> None:
    lines = _render(width)
    assert all(len(line) <= width for line in lines), "\n".join(lines)
    now = datetime.now().astimezone()
    for t in TASKS:
        when = fmt_short_time(t.created_at, now)
        row = [line for line in lines if f" {t.id} " in line]
        assert len(row) == 1 and when in row[0], "\n".join(lines)
    # every column is there, none cut at the right edge
    head = next(line for line in lines if "STATUS" in line)
    assert head.rstrip().endswith("┃") and "CREATED" in head, "\n".join(lines)
    assert ("PROGRESS" if width >= 120 else "PROG") in head


def test_narrow_shows_fewer_columns_wide_shows_all() -> None:
    narrow = "\n".join(_render(80))
    wide = "\n".join(_render(200))
    for header in ("TASK", "MODULE", "VERSION", "AGENT", "GPUS", "CPU", "MEMORY"):
        assert header in wide and header not in narrow
    assert "USAGE" in narrow and "187% 1.5 GB" in narrow
    row = next(line for line in wide.splitlines() if " 1234567 " in line)
    assert "2024.11.0-rc.1" in row and "0,1" in row and "1.5 GB + GPU 2.0 GB" in row
    assert "120/1000" in row and "started ready" in row
    row = next(line for line in narrow.splitlines() if " 1234567 " in line)
    assert "│ ready " in row and "│ 12% " in row


def test_short_time() -> None:
    now = datetime(2026, 12, 5, 7, 44, 15).astimezone()
    assert fmt_short_time(now, now) == "07:44:15"
    assert fmt_short_time(now - timedelta(days=2), now) == "12-03 07:44"
    assert fmt_short_time(now - timedelta(days=400), now) == "2025-10-31"
    assert fmt_short_time(None, now) == "-"
