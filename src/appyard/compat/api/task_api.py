"""``supervisely.api.task_api``: ``TaskApi`` over appyard's tasks.

Records are the reference's task dicts (see ``appyard.compat._records.task_record``). The
``set_output_*`` calls write the reference's output block beside appyard's own outputs, so
both the reference's readers (``info["meta"]["output"]["general"]``) and appyard's UI see them;
like every output they are written with the task's own token (from inside the app).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from appyard.compat._errors import NotSupportedError
from appyard.compat._records import TaskInfo, apply_filters
from appyard.compat.api._module import ModuleBase
from appyard.compat.sly_logger import logger
from appyard.domain.status import Status as _Status
from appyard.errors import InvalidArgumentsError, TaskFinishedWithError, WaitingTimeExceeded
from appyard.sdk.app_api import SessionInfo

if TYPE_CHECKING:
    from appyard.compat.api.api import Api

__all__ = ["KubernetesSettings", "TaskApi", "TaskFinishedWithError", "WaitingTimeExceeded"]

_TASK_KEYS = (
    "id",
    "type",
    "status",
    "workspaceId",
    "teamId",
    "userId",
    "createdBy",
    "moduleId",
    "appId",
    "agentId",
    "agentName",
    "userLogin",
    "description",
    "startedAt",
    "finishedAt",
    "createdAt",
    "updatedAt",
    "settings",
    "meta",
)

#: accepted in place of ``kubernetes_settings`` (any non-None value is refused)
KubernetesSettings = dict


class TaskApi(ModuleBase):
    """Tasks: the reference's calls, names and keyword names (``id=``, ``task_id=``)."""

    Status = _Status

    class RestartPolicy(StrEnum):
        NEVER = "never"
        ON_ERROR = "on_error"

    MAX_WAIT_ATTEMPTS = 999
    WAIT_ATTEMPT_TIMEOUT_SEC = 1

    def __init__(self, api: Api) -> None:
        self._api = api
        self._ay = api._ay

    @classmethod
    def info_sequence(cls) -> list[str]:
        """The reference's keys of a task record (ours follow them in each record)."""
        if cls._info is not None:
            return super().info_sequence()
        return list(_TASK_KEYS)

    @classmethod
    def info_tuple_name(cls) -> str:
        return "TaskInfo" if cls._info is None else super().info_tuple_name()

    @classmethod
    def convert_info_to_json(cls, info: Any) -> dict[str, Any]:
        """A task record is already the API's JSON (a copy of it)."""
        return dict(info) if isinstance(info, dict) else super().convert_info_to_json(info)

    # -- reading ------------------------------------------------------------------------------

    def get_info_by_id(self, id: int) -> TaskInfo:
        """The task record in the reference's shape (our fields beside)."""
        return self._api._record(self._ay.task.get(id))

    def get_status(self, task_id: int) -> _Status:
        return self._ay.task.get_status(task_id)

    def get_list(
        self, workspace_id: int, filters: list[dict[str, Any]] | None = None
    ) -> list[TaskInfo]:
        """Tasks of the workspace (the reference's first argument is a workspace id), newest
        first; ``filters`` on a ``status`` or ``moduleId`` go to the server, all are applied."""
        team_id = self._api._team_of_workspace(workspace_id)
        statuses: list[str] | None = None
        module_id: int | None = None
        for f in filters or []:
            field, op, value = f.get("field"), str(f.get("operator", "=")), f.get("value")
            if field == "status" and op in ("=", "in"):
                values = value if op == "in" and isinstance(value, list) else [value]
                statuses = [str(v) for v in values]
            if field in ("moduleId", "module_id") and op == "=" and isinstance(value, int):
                module_id = value
        found = [
            self._api._record(t)
            for t in self._ay.task.iter_list(team_id, module_id=module_id, statuses=statuses)
            if t.workspace_id == workspace_id
        ]
        return apply_filters(found, filters)

    def get_context(self, id: int) -> dict[str, Any]:
        """``{"team": {id, name}, "workspace": {id, name}, "user": {id, login}}`` of the task."""
        task = self._ay.task.get(id)
        team = next((t for t in self._ay.team.get_list() if t.id == task.team_id), None)
        workspace = next(
            (w for w in self._ay.workspace.get_list(task.team_id) if w.id == task.workspace_id),
            None,
        )
        return {
            "team": {"id": task.team_id, "name": team.name if team else None},
            "workspace": {"id": task.workspace_id, "name": workspace.name if workspace else None},
            "user": {"id": task.user_id, "login": self._api._login(task.team_id, task.user_id)},
            "taskId": task.id,
        }

    def get_logs(
        self, task_id: int, since_time: str | None = None, limit: int | None = None
    ) -> list[dict[str, Any]]:
        """The task's log lines as dicts (``message``, ``level``, ``timestamp``)."""
        lines = self._ay.task.logs(task_id, limit=None)
        if since_time is not None:
            lines = [x for x in lines if x.t.isoformat() >= since_time]
        out: list[dict[str, Any]] = [
            {"seq": x.seq, "timestamp": x.t.isoformat(), "level": x.level, "message": x.text}
            for x in lines
        ]
        return out[-limit:] if limit else out

    def is_running(self, task_id: int) -> bool:
        return self.get_status(task_id) == _Status.STARTED

    def is_ready(self, task_id: int) -> bool:
        return self._api.app.is_ready_for_api_calls(task_id)

    # -- waiting ------------------------------------------------------------------------------

    def raise_for_status(self, status: _Status | str) -> None:
        if str(status) == _Status.ERROR.value:
            raise TaskFinishedWithError(f"Task finished with status {_Status.ERROR.value}")

    def wait(
        self,
        id: int,
        target_status: _Status | str | None = None,
        wait_attempts: int | None = None,
        wait_attempt_timeout_sec: float | None = None,
    ) -> _Status:
        """appyard's pushed wait (returns the final status; the reference returns None)."""
        return self._ay.task.wait(id, target_status, wait_attempts, wait_attempt_timeout_sec)

    # -- starting and stopping ----------------------------------------------------------------

    def start(
        self,
        agent_id: int | None,
        app_id: int | None = None,
        workspace_id: int | None = None,
        description: str | None = "application description",
        params: dict[str, Any] | None = None,
        log_level: str | None = "info",
        users_ids: list[int] | None = None,
        app_version: str | None = "",
        is_branch: bool | None = False,
        task_name: str | None = "pythonSpawned",
        restart_policy: str | None = "never",
        proxy_keep_url: bool | None = False,
        module_id: int | None = None,
        redirect_requests: dict[str, int] | None = None,
        limit_by_workspace: bool = False,
        kubernetes_settings: Any = None,
        multi_user_session: bool = False,
    ) -> dict[str, Any]:
        """Start a session; the reference's answer: ``{"taskId", "id", "userId", "moduleId",
        "appId", "status"}``."""
        session = self._api.app._start(
            agent_id=agent_id,
            app_id=app_id,
            workspace_id=workspace_id,
            description=description or "",
            params=params,
            log_level=log_level or "info",
            users=users_ids,
            app_version=app_version,
            is_branch=bool(is_branch),
            task_name=task_name or "pythonSpawned",
            restart_policy=restart_policy or "never",
            module_id=module_id,
            kubernetes_settings=kubernetes_settings,
            multi_user_session=multi_user_session,
        )
        return started_dict(session)

    def stop(self, id: int) -> _Status:
        return self._ay.task.stop(id)

    def update_status(self, task_id: int, status: _Status | str) -> None:
        """``deployed``: the app says it is ready (its ``ready`` flag; it stays ``started``);
        ``stopped`` /
        ``terminating``: a stop. ``finished`` and ``error`` follow the app's exit in appyard
        (exit 0 / non-zero), so they are refused with ``NotSupportedError``."""
        value = str(status)
        if value not in [s.value for s in _Status]:
            raise ValueError(
                f"Invalid status value: {value}. Allowed values: {[s.value for s in _Status]}"
            )
        if value == _Status.DEPLOYED.value:
            self._ay.task.set_ready(task_id)
        elif value in (_Status.STOPPED.value, _Status.TERMINATING.value):
            self._ay.task.stop(task_id)
        else:
            raise NotSupportedError(
                f"update_status(..., {value!r}) is not supported: in appyard a task's status "
                "follows its app's process (exit 0: finished, non-zero: error; "
                "api.task.stop(id) to stop it, update_status(id, 'deployed') when a serving "
                "app is ready)."
            )

    def submit_logs(self, logs: Iterable[Any]) -> None:
        """Inside an app: each entry goes to the app's output, which the agent ships into the
        task's log. Outside an app: ``NotSupportedError`` (only the agent writes task logs)."""
        if not os.environ.get("TASK_ID"):
            raise NotSupportedError(
                "submit_logs works inside an app only: appyard's agent ships what the app "
                "prints (or logs with sly.logger) into the task's log."
            )
        for entry in logs:
            if isinstance(entry, dict):
                message = entry.get("message", entry.get("text", entry))
                level = str(entry.get("level", "info")).lower()
            else:
                message, level = entry, "info"
            logger.log(_LEVELS.get(level, 20), "%s", message)

    # -- requests into a session --------------------------------------------------------------

    def send_request(
        self,
        task_id: int,
        method: str,
        data: dict[str, Any],
        context: dict[str, Any] | None = None,
        skip_response: bool = False,
        timeout: float | None = 60,
        outside_request: bool = True,
        retries: int = 10,
        raise_error: bool = False,
    ) -> Any:
        if not isinstance(data, dict):
            raise TypeError("data argument has to be a dict")
        return self._ay.task.send_request(
            task_id,
            method,
            data,
            context=context,
            skip_response=skip_response,
            timeout=60 if timeout is None else timeout,
            outside_request=outside_request,
            retries=retries,
            raise_error=raise_error,
        )

    # -- fields: kept in the task's outputs -----------------------------------------------------

    def set_fields(self, task_id: int, fields: list[dict[str, Any]]) -> dict[str, Any]:
        """Each ``{"field", "payload", "append"?, "recursive"?}`` becomes output ``field``
        (written with the task's own token). ``append``: added to the list there;
        ``recursive``: a dict payload merged into the dict there."""
        for idx, obj in enumerate(fields):
            for key in ("field", "payload"):
                if key not in obj:
                    raise KeyError(f"Object #{idx} does not have field {key!r}")
        current: dict[str, Any] | None = None
        update: dict[str, Any] = {}
        for obj in fields:
            name, payload = str(obj["field"]), obj["payload"]
            if obj.get("append") or obj.get("recursive"):
                if current is None:
                    current = dict(self._ay.task.get(task_id).outputs)
                before = update.get(name, current.get(name))
                if obj.get("append"):
                    items = list(before) if isinstance(before, list) else []
                    items.extend(payload if isinstance(payload, list) else [payload])
                    payload = items
                elif isinstance(before, dict) and isinstance(payload, dict):
                    payload = {**before, **payload}
            update[name] = payload
        self._ay.task.set_outputs(task_id, update)
        return {"success": True}

    def set_fields_from_dict(self, task_id: int, d: dict[str, Any]) -> dict[str, Any]:
        return self.set_fields(task_id, [{"field": k, "payload": v} for k, v in d.items()])

    def set_field(
        self,
        task_id: int,
        field: str,
        payload: Any,
        append: bool = False,
        recursive: bool = False,
    ) -> dict[str, Any]:
        return self.set_fields(
            task_id,
            [{"field": field, "payload": payload, "append": append, "recursive": recursive}],
        )

    def get_fields(self, task_id: int, fields: list[str]) -> dict[str, Any]:
        outputs = self._ay.task.get(task_id).outputs
        return {f: outputs.get(f) for f in fields}

    def get_field(self, task_id: int, field: str) -> Any:
        return self.get_fields(task_id, [field])[field]

    # -- outputs in the reference's shape -----------------------------------------------------

    def _general(
        self,
        task_id: int,
        general: dict[str, Any],
        ours: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        self._ay.task.set_outputs(task_id, {**(ours or {}), "general": general})
        return {"success": True}

    def _file_output(
        self,
        task_id: int,
        key: str,
        file_id: Any,
        file_name: str,
        description: str,
        icon: str,
        download: bool,
        file_url: str | None,
    ) -> dict[str, Any]:
        task = self._ay.task.get(task_id)
        path = self._team_path(file_id, task.team_id)
        from appyard.compat._records import file_url as url_of

        general = {
            "icon": {"className": icon, "color": "#33c94c", "backgroundColor": "#d9f7e4"},
            "title": file_name,
            "titleUrl": file_url or url_of(self._api.server_address, task.team_id, path),
            "download": download,
            "description": description,
            "path": path,
        }
        ours = {key: {"type": "team_file", "path": path, "title": file_name}}
        return self._general(task_id, general, ours)

    def _team_path(self, file_id: Any, team_id: int) -> str:
        """The team path of a reference ``file_id``: a team file's id (as the reference), or
        its path, or a file info with ``.path``. A file of another team than the task's is
        refused: the output would point at nothing the task's team can read."""
        if not isinstance(file_id, int) or isinstance(file_id, bool):
            return team_path(file_id)
        info = self._ay.file.get_info_by_id(file_id)  # NotFoundError on file_id if none
        if info.team_id != team_id:
            raise InvalidArgumentsError(
                f"file_id={file_id}: the file is in team {info.team_id}'s files, the task in "
                f"team {team_id}; upload the file to team {team_id}'s files and pass its id."
            )
        return info.path

    def set_output_archive(
        self, task_id: int, file_id: Any, file_name: str, file_url: str | None = None
    ) -> dict[str, Any]:
        """``file_id``: the team file's id (``api.file.upload(...).id``), its team path, or a
        file info with ``.path``."""
        return self._file_output(
            task_id,
            "archive",
            file_id,
            file_name,
            "Download archive",
            "zmdi zmdi-archive",
            True,
            file_url,
        )

    def set_output_file_download(
        self,
        task_id: int,
        file_id: Any,
        file_name: str,
        file_url: str | None = None,
        download: bool = True,
    ) -> dict[str, Any]:
        return self._file_output(
            task_id,
            "file",
            file_id,
            file_name,
            "Download file",
            "zmdi zmdi-file",
            download,
            file_url,
        )

    def set_output_report(
        self, task_id: int, file_id: Any, file_name: str, description: str = "Report"
    ) -> dict[str, Any]:
        return self._file_output(
            task_id, "report", file_id, file_name, description, "zmdi zmdi-receipt", False, None
        )

    def set_output_directory(
        self, task_id: int, file_id: Any, directory_path: str
    ) -> dict[str, Any]:
        general = {
            "icon": {
                "className": "zmdi zmdi-folder",
                "color": "#33c94c",
                "backgroundColor": "#d9f7e4",
            },
            "title": directory_path,
            "titleUrl": None,
            "download": False,
            "description": "Directory",
            "path": directory_path,
        }
        ours = {"directory": {"type": "team_folder", "path": directory_path}}
        return self._general(task_id, general, ours)

    def set_output_project(
        self,
        task_id: int,
        project_id: int,
        project_name: str | None = None,
        project_preview: str | None = None,
    ) -> dict[str, Any]:
        if project_name is None:
            project_name = self._ay.project.get_info_by_id(project_id).name
        block: dict[str, Any] = {"id": project_id, "title": project_name}
        if project_preview is not None:
            block["preview"] = project_preview
        self._ay.task.set_outputs(task_id, {"project_id": project_id, "project": block})
        return {"success": True}

    def set_output_text(
        self,
        task_id: int,
        title: str,
        description: str | None = None,
        show_logs: bool = False,
        zmdi_icon: str = "zmdi-comment-alt-text",
        icon_color: str = "#33c94c",
        background_color: str = "#d9f7e4",
    ) -> dict[str, Any]:
        general: dict[str, Any] = {
            "icon": {
                "className": f"zmdi {zmdi_icon}",
                "color": icon_color,
                "backgroundColor": background_color,
            },
            "title": title,
            "showLogs": show_logs,
            "isError": False,
        }
        if description is not None:
            general["description"] = description
        return self._general(task_id, general)

    def set_output_error(
        self, task_id: int, title: str, description: str | None = None, show_logs: bool = True
    ) -> dict[str, Any]:
        general: dict[str, Any] = {
            "icon": {
                "className": "zmdi zmdi-alert-octagon",
                "color": "#ff83a6",
                "backgroundColor": "#ffeae9",
            },
            "title": title,
            "showLogs": show_logs,
            "isError": True,
        }
        if description is not None:
            general["description"] = description
        return self._general(task_id, general)

    def set_output_experiment(
        self, task_id: int, experiment_info: dict[str, Any]
    ) -> dict[str, Any]:
        self._ay.task.set_outputs(task_id, {"experiment": {"data": dict(experiment_info)}})
        return {"success": True}

    # -- refused --------------------------------------------------------------------------------

    def update_meta(self, id: int, data: dict[str, Any], *args: Any, **kwargs: Any) -> None:
        raise NotSupportedError(
            "update_meta is not supported: appyard keeps a task's record itself; report "
            "results with set_output_* or set_field, progress with AppSession.progress."
        )

    def upload_files(
        self, task_id: int, abs_paths: list[str], names: list[str], progress_cb: Any = None
    ) -> None:
        raise NotSupportedError(
            "upload_files is not supported: tasks have no file store in appyard; upload to the "
            "team's files with api.file.upload(team_id, local, remote) and set_output_archive."
        )


_LEVELS = {"debug": 10, "info": 20, "warn": 30, "warning": 30, "error": 40, "fatal": 50}


def team_path(file_id: Any) -> str:
    """The team path a reference ``file_id`` that is not an id stands for: a path
    (``"/exports/a.tar"``) or a file info with ``.path``."""
    if isinstance(file_id, str) and file_id.startswith("/"):
        return file_id
    path = getattr(file_id, "path", None)
    if isinstance(path, str):
        return path
    raise InvalidArgumentsError(
        f"file_id={file_id!r} is neither a team file's id nor its path; pass the id "
        "(api.file.upload(...).id), the team path (e.g. '/exports/result.tar') or the FileInfo "
        "api.file.upload returned."
    )


def started_dict(session: SessionInfo) -> dict[str, Any]:
    return {
        "taskId": session.task_id,
        "id": session.task_id,
        "userId": session.user_id,
        "moduleId": session.module_id,
        "appId": session.app_id,
    }
