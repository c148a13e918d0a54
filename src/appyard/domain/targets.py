"""The context-menu targets an app can be started from, and the state key each one fills."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Target:
    name: str
    state_key: str | None
    value_type: type | None
    help: str


TARGETS: dict[str, Target] = {
    t.name: t
    for t in (
        Target(
            "images_project",
            "projectId",
            int,
            "Context menu of images project. Target value is project id.",
        ),
        Target(
            "images_dataset",
            "datasetId",
            int,
            "Context menu of images dataset. Target value is dataset id.",
        ),
        Target(
            "files_folder",
            "folder",
            str,
            "Context menu of folder in Team Files. Target value is directory path.",
        ),
        Target(
            "files_file",
            "file",
            str,
            "Context menu of file in Team Files. Target value is file path.",
        ),
        Target("team", "teamId", int, "Context menu of team. Target value is team id."),
        Target(
            "team_member",
            "memberId",
            int,
            "Context menu of team member. Target value is user id.",
        ),
        Target(
            "ecosystem",
            None,
            None,
            "Run button in ecosystem. It is not needed to define any target",
        ),
    )
}

#: state keys of targets whose value names a project/dataset; used to fill PROJECT_ID etc.
STATE_KEY_TO_ENV: dict[str, str] = {
    "projectId": "PROJECT_ID",
    "datasetId": "DATASET_ID",
    "folder": "FOLDER",
    "file": "FILE",
}


def type_matches(value: object, value_type: type) -> bool:
    """Type check of a target value: any integral number except bool passes an int check."""
    if value_type is int:
        if isinstance(value, bool):
            return False
        if isinstance(value, int):
            return True
        return isinstance(value, float) and value.is_integer()
    return isinstance(value, value_type)
