"""A start's target (``context_menu.target``) must name something of the starting team.

An images project or dataset of the team, or a folder / file of its team files, checked before
anything is written; another team's project or dataset is refused exactly like a missing one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from appyard.domain.targets import TARGETS
from appyard.errors import BadRequestError, NotFoundError
from appyard.schemas.common import MAX_ID
from appyard.server.db.models import Dataset, Project
from appyard.server.services.files import TeamFiles, normalize


def _target_field(key: str) -> str:
    return f"params.state.{key}"


def _check_project(s: Session, team_id: int, key: str, value: Any) -> None:
    project_id = int(value)
    project = s.get(Project, project_id) if 1 <= project_id <= MAX_ID else None
    if project is None or project.team_id != team_id:  # another team's: as if missing
        raise BadRequestError(
            f"{_target_field(key)}: there is no images project {project_id} in team {team_id}; "
            "pick one of the team's projects (api.project.get_list(workspace_id)).",
            field=_target_field(key),
        )


def _check_dataset(s: Session, team_id: int, key: str, value: Any) -> None:
    dataset_id = int(value)
    dataset = s.get(Dataset, dataset_id) if 1 <= dataset_id <= MAX_ID else None
    project = s.get(Project, dataset.project_id) if dataset is not None else None
    if project is None or project.team_id != team_id:  # another team's: as if missing
        raise BadRequestError(
            f"{_target_field(key)}: there is no images dataset {dataset_id} in team {team_id}; "
            "pick one of the datasets of the team's projects (api.dataset.get_list(project_id)).",
            field=_target_field(key),
        )


def _check_team_path(files_dir: Path, team_id: int, key: str, value: Any, folder: bool) -> str:
    """A ``folder``/``file`` target: a normalized team path that is a folder / a file now."""
    field = _target_field(key)
    path = normalize(value, field)
    files = TeamFiles(files_dir, team_id)
    kind, other = ("folder", "file") if folder else ("file", "folder")
    try:
        is_dir: bool | None = files.info(path).is_dir
        if not is_dir and not files.is_file(path):
            is_dir = None  # a socket or the like: not a team file
    except NotFoundError:
        is_dir = None
    except BadRequestError as exc:  # a symbolic link on the way, or outside the team's root
        message = exc.message.removeprefix("path: ")
        raise BadRequestError(f"{field}: {message}", field=field) from None
    if is_dir is None:
        what = (
            "make it (api.file.mkdir) or upload files into it (api.file.upload)"
            if folder
            else "upload it first (api.file.upload)"
        )
        raise BadRequestError(
            f"{field}: there is no {kind} {path!r} in team {team_id}'s files; {what}, "
            f"or pick an existing {kind} (api.file.list(team_id, path)).",
            field=field,
        )
    if is_dir != folder:
        other_target = "files_file (file=...)" if folder else "files_folder (folder=...)"
        raise BadRequestError(
            f"{field}: {path!r} is a {other} in team {team_id}'s files, not a {kind}; "
            f"pick a {kind}, or start an app whose target is {other_target}.",
            field=field,
        )
    return path


def check_target(
    s: Session, *, files_dir: Path, team_id: int, target: str | None, state: dict[str, Any]
) -> dict[str, Any]:
    """The target value must name something of the team (``team_id``): an images project or
    dataset of it, or a folder / file of its team files. Another team's project or dataset is
    refused exactly like a missing one. Returns the state, with a path target normalized."""
    spec = TARGETS.get(target) if target is not None else None
    if spec is None or spec.state_key is None or spec.state_key not in state:
        return state
    key = spec.state_key
    value = state[key]
    if target == "images_project":
        _check_project(s, team_id, key, value)
    elif target == "images_dataset":
        _check_dataset(s, team_id, key, value)
    elif target in ("files_folder", "files_file"):
        path = _check_team_path(files_dir, team_id, key, value, folder=target == "files_folder")
        return {**state, key: path}
    return state
