"""``supervisely.app``: the app's data folder (``get_data_dir``)."""

from __future__ import annotations

import os

from appyard.sdk import env

__all__ = ["get_data_dir", "get_synced_data_dir"]

_KEYS = ("SLY_APP_DATA_DIR", "DEBUG_APP_DIR")


def get_data_dir() -> str:
    """A folder for the app's working files, made when missing.

    ``SLY_APP_DATA_DIR`` or ``DEBUG_APP_DIR`` when set; inside an app's task (``TASK_ID``) the
    ``data`` folder in the task's own work folder (the app's working directory, which the agent
    makes fresh for every task). Neither: ``ValueError`` naming the variables.
    """
    folder = next((os.environ[k] for k in _KEYS if os.environ.get(k)), None)
    if folder is None and env.task_id(raise_not_found=False) is not None:
        folder = os.path.join(os.getcwd(), "data")
    if folder is None:
        raise ValueError(
            f"One of the env variables have to be defined: {[*_KEYS, 'TASK_ID']} "
            "(set SLY_APP_DATA_DIR to a folder when running outside an app)"
        )
    os.makedirs(folder, exist_ok=True)
    return folder


def get_synced_data_dir() -> str:
    """``SLY_APP_DATA_DIR`` / ``DEBUG_APP_DIR``, else the same folder as :func:`get_data_dir`
    (appyard keeps no synced folder beside the team's files)."""
    folder = next((os.environ[k] for k in _KEYS if os.environ.get(k)), None)
    if folder is None:
        return get_data_dir()
    os.makedirs(folder, exist_ok=True)
    return folder
