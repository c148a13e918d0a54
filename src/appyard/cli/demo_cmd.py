"""``appyard demo``: the start/stop tutorial's flow, for real, in one command.

On the appyard that ``appyard up`` runs (found through ``~/appyard.env``), or, when none
answers, on a server and agent started for the run in a temporary folder and stopped after it.
It uses the demo images project, starts ``export-to-pascal-voc`` on it with changed options,
waits with a progress bar, fetches the archive and lists the app's finished sessions.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import tarfile
import tempfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer

from appyard.cli._common import console, err_console
from appyard.cli.app_cmd import sessions_table, wait_and_report
from appyard.cli.demo_project import create_demo_project
from appyard.cli.process_cmd import running_appyard
from appyard.domain.status import Status
from appyard.errors import (
    AppyardError,
    AuthenticationError,
    NotFoundError,
    ServerUnavailableError,
)
from appyard.sdk import Api, env
from appyard.sdk.api import default_env_file

EXPORT_APP = "appyard/export-to-pascal-voc"
#: the tutorial's changes to the app's defaults
CHANGED_OPTIONS: dict[str, Any] = {"trainSplitCoef": 0.7, "pascalContourThickness": 2}


class _Ids:
    """Where the demo runs: team, workspace, agent and project ids."""

    def __init__(
        self, team_id: int, workspace_id: int, agent_id: int | None, project_id: int | None
    ) -> None:
        self.team_id, self.workspace_id = team_id, workspace_id
        self.agent_id, self.project_id = agent_id, project_id


def _running_api() -> tuple[Api, _Ids] | None:
    """The appyard ``~/appyard.env`` points at, if it answers with a working token."""
    if not default_env_file().is_file() and not env.server_address(raise_not_found=False):
        return None
    try:
        api = Api.from_env(timeout=10, retry_count=0)
    except (AppyardError, FileNotFoundError):
        return None
    try:
        api.user.me()
        team, workspace = env.team_id(), env.workspace_id()
    except (ServerUnavailableError, AuthenticationError, KeyError, ValueError):
        api.close()
        return None
    ids = _Ids(
        team,
        workspace,
        env.agent_id(raise_not_found=False),
        env.project_id(raise_not_found=False),
    )
    api.close()  # the probe fails fast; the demo's client keeps the default retries
    return Api.from_env(), ids


@contextlib.contextmanager
def _appyard() -> Iterator[tuple[Api, _Ids]]:
    found = _running_api()
    if found is not None:
        api, ids = found
        console.print(f"Using the appyard at {api.server_address}")
        with api:
            yield api, ids
        return
    home = Path(tempfile.mkdtemp(prefix="appyard-demo-"))
    console.print("No appyard is up: starting a server and an agent for this run...")
    try:
        with running_appyard(home, "127.0.0.1", 0, slots=2, quiet=True) as local:
            s = local.state
            assert s.team_id is not None and s.workspace_id is not None
            yield local.api, _Ids(s.team_id, s.workspace_id, s.agent_id, s.project_id)
    finally:
        shutil.rmtree(home, ignore_errors=True)


def _summary(archive: Path) -> str:
    """What is in the archive: files per folder of its ``<top folder>/VOCdevkit/VOC/``."""
    with tarfile.open(archive) as tar:
        names = [m.name for m in tar.getmembers() if m.isfile()]
    voc = f"{archive.name.removesuffix('.tar')}/VOCdevkit/VOC/"
    inside = [n.removeprefix(voc) for n in names]
    per_folder = Counter(n.split("/")[0] + "/" if "/" in n else n for n in inside)
    counts = ", ".join(f"{folder} {count}" for folder, count in sorted(per_folder.items()))
    return f"VOCdevkit/VOC: {counts}"


def demo(
    save_to: Annotated[
        Path, typer.Option(help="Local folder the exported archive is downloaded to.")
    ] = Path("appyard-demo"),
) -> None:
    """Export the demo images project to Pascal VOC, as the start/stop tutorial does.

    Uses the appyard `appyard up` runs, else starts one for the run.
    """
    with _appyard() as (api, ids):
        project = None
        if ids.project_id is not None:
            with contextlib.suppress(NotFoundError):
                project = api.project.get_info_by_id(ids.project_id)
            if project is not None and project.workspace_id != ids.workspace_id:
                project = None  # an id from another database or workspace
        if project is None:
            console.print("Creating the demo images project...")
            project_id = create_demo_project(api, ids.workspace_id, ids.agent_id)
            project = api.project.get_info_by_id(project_id)
        console.print(
            f"Project {project.id} {project.name!r}: "
            f"{project.datasets_count} datasets, {project.images_count} images"
        )

        module_id = api.app.get_ecosystem_module_id(EXPORT_APP)
        module_info = api.app.get_ecosystem_module_info(module_id)
        console.print(f"Start app: {module_info.name}")
        console.print("App arguments (like --help in a terminal):")
        console.print(module_info.arguments_help_text(), end="", markup=False)
        params = module_info.get_arguments(images_project=project.id)
        params.update(CHANGED_OPTIONS)
        console.print("Starting it with:", json.dumps(params), markup=False)

        session = api.app.start(
            agent_id=ids.agent_id,
            module_id=module_id,
            workspace_id=ids.workspace_id,
            task_name="appyard demo",
            params=params,
        )
        console.print(f"App is started, task_id = {session.task_id}")
        wait_and_report(api, session.task_id, Status.FINISHED)

        task = api.task.get(session.task_id)
        output = task.outputs.get("archive")
        if not isinstance(output, dict) or not isinstance(output.get("path"), str):
            err_console.print(f"the export set no archive output: {task.outputs}")
            raise typer.Exit(1)
        remote = output["path"]
        local = save_to / Path(remote).name
        save_to.mkdir(parents=True, exist_ok=True)
        api.file.download(ids.team_id, remote, local)
        console.print(f"Archive in team {ids.team_id}'s files: {remote}")
        console.print(f"Downloaded to {local.resolve()} ({_summary(local)})")

        finished = api.task.get_list(ids.team_id, module_id, [Status.FINISHED], limit=10)
        console.print(f"Finished sessions of {EXPORT_APP}:")
        console.print(sessions_table(finished))
