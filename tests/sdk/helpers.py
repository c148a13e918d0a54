"""Helpers of the SDK tests: the Pascal app manifest, a tenant, and a scripted agent.

The agent here is a small fake at the HTTP seam: it speaks the agent protocol (hello, poll,
events, log batches) so that a test decides exactly when a task starts, logs and ends. The
real agent runs in ``tests/e2e`` and in the ``appyard up`` test.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx

from appyard.schemas.agents import TaskAssignment
from appyard.sdk import Api

PASCAL_CONFIG = {
    "name": "Export to Pascal VOC",
    "slug": "appyard/export-to-pascal-voc",
    "main_script": "main.py",
    "modal_template_state": {"pascalContourThickness": 3, "trainSplitCoef": 0.8},
    "context_menu": {"target": ["images_project", "images_dataset"]},
    "headless": True,
}


@dataclass
class Tenant:
    """A fresh team with a workspace, an agent and the published Pascal app."""

    api: Api
    team_id: int
    workspace_id: int
    agent_id: int
    agent_token: str
    module_id: int


class FakeAgent:
    """Speaks the agent protocol so a test controls each step of a task."""

    def __init__(self, address: str, token: str) -> None:
        self.client = httpx.Client(
            base_url=address + "/api/v1", headers={"Authorization": f"Bearer {token}"}, timeout=60
        )
        welcome = self._post("/agents/hello", {"slots": 4, "hostname": "test", "version": "t"})
        self.agent_id = int(welcome["agent_id"])
        self.offsets: dict[int, int] = {}

    def _post(self, path: str, body: dict[str, Any]) -> Any:
        r = self.client.post(path, json=body)
        assert r.is_success, r.text
        return r.json()

    def take(self, timeout: float = 10.0) -> TaskAssignment:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            answer = self._post(f"/agents/{self.agent_id}/poll", {"free_slots": 4, "timeout_s": 5})
            if answer["tasks"]:
                return TaskAssignment.model_validate(answer["tasks"][0])
        raise AssertionError("no task was assigned")

    def event(self, task_id: int, kind: str, **fields: Any) -> dict[str, Any]:
        body: dict[str, Any] = {"kind": kind, **fields}
        result: dict[str, Any] = self._post(f"/tasks/{task_id}/events", body)
        return result

    def started(self, task_id: int) -> None:
        self.event(task_id, "started", pid=os.getpid())

    def exited(self, task_id: int, code: int) -> None:
        self.event(task_id, "exited", exit_code=code)

    def log(self, task_id: int, *texts: str, level: str = "info") -> None:
        start = self.offsets.get(task_id, 0)
        end = start + sum(len(t) + 1 for t in texts)
        now = datetime.now(UTC).isoformat()
        lines = [{"t": now, "level": level, "text": t} for t in texts]
        self._post(f"/tasks/{task_id}/logs", {"offset": start, "end_offset": end, "lines": lines})
        self.offsets[task_id] = end

    def close(self) -> None:
        self.client.close()
