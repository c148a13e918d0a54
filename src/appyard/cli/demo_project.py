"""The demo images project: made once by running the bundled ``create-demo-project`` app.

``appyard up`` keeps its id (``up.json``, ``PROJECT_ID`` in ``~/appyard.env``) so that the
tutorial finds data to export; ``appyard demo`` uses it too.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from rich.console import Console

from appyard.domain.status import Status
from appyard.errors import AppyardError, NotFoundError
from appyard.sdk import Api

DEMO_APP = "appyard/create-demo-project"
DEMO_TIMEOUT_S = 600.0  # the first run may build nothing, but a slow machine draws slowly


class _Ids(Protocol):
    workspace_id: int | None
    agent_id: int | None
    project_id: int | None


def create_demo_project(api: Api, workspace_id: int, agent_id: int | None) -> int:
    """Run ``create-demo-project`` on ``agent_id`` (or any agent) and return the project's id."""
    module_id = api.app.get_ecosystem_module_id(DEMO_APP)
    params = api.app.get_ecosystem_module_info(module_id).get_arguments()
    session = api.app.start(
        agent_id=agent_id,
        module_id=module_id,
        workspace_id=workspace_id,
        task_name="create the demo project",
        params=params,
    )
    api.task.wait(session.task_id, Status.FINISHED, 1, DEMO_TIMEOUT_S)
    outputs = api.task.get(session.task_id).outputs
    project_id = outputs.get("project_id")
    if not isinstance(project_id, int):
        raise NotFoundError(
            f"{DEMO_APP} finished without a project_id output (task {session.task_id}); "
            f"see `appyard app logs {session.task_id}`."
        )
    return project_id


def ensure_demo_project(api: Api, ids: _Ids, save: Callable[[], None], out: Console) -> None:
    """Keep ``ids.project_id`` pointing at a demo project of the workspace; make one if needed.

    A failure is a warning, not the end of ``up``: the platform works without the demo data.
    """
    if ids.project_id is not None:
        try:
            if api.project.get_info_by_id(ids.project_id).workspace_id == ids.workspace_id:
                return
        except NotFoundError:
            pass
        ids.project_id = None
        save()
    if ids.workspace_id is None:
        return
    out.print("creating the demo images project (once)...")
    try:
        ids.project_id = create_demo_project(api, ids.workspace_id, ids.agent_id)
    except AppyardError as exc:
        out.print(f"[yellow]warning:[/yellow] no demo project: {exc}")
        return
    save()
    out.print(f"  demo project {ids.project_id}")
