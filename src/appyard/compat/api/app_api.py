"""``supervisely.api.app_api``: ``AppApi`` (a ``TaskApi``, as in the reference) over appyard's
catalog and sessions; ``SessionInfo`` and ``ModuleInfo`` are appyard's own (same fields)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any

from appyard.compat._errors import NotSupportedError, refused
from appyard.compat._records import AppInfo, apply_filters, iso
from appyard.compat.api.task_api import TaskApi
from appyard.domain.status import Status as _Status
from appyard.errors import AppyardError, NotFoundError
from appyard.schemas.tasks import TaskInfo as OurTask
from appyard.sdk.app_api import SessionInfo
from appyard.sdk.module_info import ModuleInfo

__all__ = ["AppApi", "AppInfo", "ModuleInfo", "SessionInfo"]

_RUNNING = (_Status.QUEUED, _Status.CONSUMED, _Status.STARTED, _Status.DEPLOYED)


_PLUGINS = (
    "it belongs to the reference's plugins (DTL, training and inference plugins, model "
    "deployments), which appyard does not have; publish the work as an app and start it with "
    "api.app.start."
)


class AppApi(TaskApi):
    """Apps of the ecosystem, apps installed in teams, and their sessions."""

    _info = AppInfo

    run_dtl = refused("run_dtl", _PLUGINS)
    run_train = refused("run_train", _PLUGINS)
    run_inference = refused("run_inference", _PLUGINS)
    deploy_model = refused("deploy_model", _PLUGINS)
    get_training_metrics = refused("get_training_metrics", _PLUGINS)
    get_import_files_list = refused(
        "get_import_files_list",
        "import tasks keep no file list in appyard; read the team's files with api.file.",
    )
    download_import_file = refused(
        "download_import_file",
        "import tasks keep no files in appyard; download team files with api.file.download.",
    )
    create_task_detached = refused(
        "create_task_detached",
        "a task is made by starting an app (api.app.start); report from inside it with "
        "set_output_* and set_field.",
    )
    download_git_file = refused(
        "download_git_file",
        "appyard apps are published releases, not git repositories; read a release's "
        "manifest with api.app.get_ecosystem_module_info.",
    )
    download_git_archive = refused(
        "download_git_archive",
        "appyard apps are published releases, not git repositories; the agent fetches a "
        "release by its sha256.",
    )

    # -- the catalog ----------------------------------------------------------------------------

    def get_ecosystem_module_id(self, slug: str) -> int:
        return self._ay.app.get_ecosystem_module_id(slug)

    def get_ecosystem_module_info(
        self, module_id: int | None = None, version: str | None = None, slug: str | None = None
    ) -> ModuleInfo:
        return self._ay.app.get_ecosystem_module_info(module_id, version, slug)

    def get_info(self, module_id: int, version: str | None = None) -> ModuleInfo:
        return self._ay.module.get(module_id, version)

    def get_list_ecosystem_modules(
        self,
        search: str | None = None,
        categories: list[str] | None = None,
        categories_operation: str = "or",
    ) -> list[dict[str, Any]]:
        """Catalog entries as dicts (``id``, ``slug``, ``name``, ``config``, ...); ``search``
        matches name and slug; ``categories`` the manifest's ``categories``. None found:
        ``KeyError("No modules found in ecosystem")`` as in the reference."""
        modules = self._ay.module.get_list(q=search)
        if categories:
            want = set(categories)

            def has(m: ModuleInfo) -> bool:
                cats = set(m.config.get("categories") or [])
                return want <= cats if categories_operation == "and" else bool(want & cats)

            modules = [m for m in modules if has(m)]
        if not modules:
            raise KeyError("No modules found in ecosystem")
        out = []
        for m in modules:
            data = dataclasses.asdict(m)
            data.update(createdAt=iso(m.created_at), updatedAt=iso(m.updated_at))
            data["created_at"], data["updated_at"] = data["createdAt"], data["updatedAt"]
            out.append(data)
        return out

    def find_module_id_by_app_name(self, app_name: str) -> int:
        """The module whose name is ``app_name`` (exactly, else the only one matching)."""
        try:
            modules = self.get_list_ecosystem_modules(search=app_name)
        except KeyError:
            modules = []
        exact = [m for m in modules if m["name"] == app_name]
        modules = exact or modules
        if not modules:
            raise ValueError(f"No serving apps found for app name {app_name}")
        if len(modules) > 1:
            raise ValueError(f"Multiple serving apps found for app name {app_name}")
        return int(modules[0]["id"])

    # -- apps installed in teams ----------------------------------------------------------------

    def _apps(self, team_id: int, only_running: bool = False) -> list[AppInfo]:
        """A team's apps, from its sessions (an app is made on its first start)."""
        statuses = list(_RUNNING) if only_running else None
        by_app: dict[int, list[OurTask]] = {}
        for task in self._ay.task.iter_list(team_id, statuses=statuses):
            by_app.setdefault(task.app_id, []).append(task)
        apps = []
        for app_id, tasks in sorted(by_app.items()):
            first = tasks[-1]  # newest first: the last is the oldest
            module = self._ay.module.get(first.module_id)
            apps.append(
                AppInfo(
                    id=app_id,
                    created_by_id=first.user_id,
                    module_id=first.module_id,
                    disabled=False,
                    user_login=self._api._login(team_id, first.user_id),
                    config=module.config,
                    name=module.name,
                    slug=module.slug,
                    is_shared=False,
                    tasks=[self._api._record(t) for t in tasks],
                    repo=module.repo,
                    team_id=team_id,
                )
            )
        return apps

    def get_list(  # type: ignore[override]  # the reference's AppApi.get_list is the apps'
        self,
        team_id: int,
        filter: list[dict[str, Any]] | None = None,
        context: list[str] | None = None,
        repository_key: str | None = None,
        show_disabled: bool = False,
        integrated_into: list[str] | None = None,
        session_tags: list[str] | None = None,
        only_running: bool = False,
        with_shared: bool = True,
        force_all_sessions: bool = True,
    ) -> list[AppInfo]:
        """Apps of the team (modules started there at least once), each with its sessions in
        ``tasks``; ``filter`` as in the reference, ``context`` by the manifest's targets,
        ``only_running``: apps with a live session (and only those sessions);
        ``force_all_sessions=False``: every app, with only its live sessions in ``tasks``."""
        if integrated_into or session_tags or repository_key:
            raise NotSupportedError(
                "get_list(integrated_into=/session_tags=/repository_key=) is not supported: "
                "appyard apps have no such attributes; filter by moduleId or name instead."
            )
        apps = self._apps(team_id, only_running)
        if not force_all_sessions:  # every app, with only its live sessions in ``tasks``
            live = {str(x) for x in _RUNNING}
            apps = [a._replace(tasks=[t for t in a.tasks if t["status"] in live]) for a in apps]
        if context:
            apps = [
                a
                for a in apps
                if set(context) & set((a.config.get("context_menu") or {}).get("target") or [])
            ]
        return apply_filters(apps, filter)

    def get_info_by_id(self, id: int) -> AppInfo:  # type: ignore[override]
        """The app (a module installed in a team) with id ``id``; looked up through the
        caller's teams' sessions."""
        for team in self._ay.team.get_list():
            for app in self._apps(team.id):
                if app.id == id:
                    return app
        raise NotFoundError(f"App {id} not found in your teams (an app is made on its first start)")

    # -- sessions -------------------------------------------------------------------------------

    def _start(
        self,
        *,
        agent_id: int | None,
        app_id: int | None,
        workspace_id: int | None,
        description: str,
        params: dict[str, Any] | None,
        log_level: str,
        users: int | list[int] | None,
        app_version: str | None,
        is_branch: bool,
        task_name: str,
        restart_policy: str,
        module_id: int | None,
        kubernetes_settings: Any,
        multi_user_session: bool,
    ) -> SessionInfo:
        if app_id is not None and module_id is not None:
            raise ValueError("Only one of the arguments (app_id or module_id) have to be defined")
        if app_id is None and module_id is None:
            raise ValueError("One of the arguments (app_id or module_id) have to be defined")
        if kubernetes_settings is not None:
            raise NotSupportedError(
                "kubernetes_settings is not supported: appyard runs apps on its agents, not on "
                "Kubernetes; pick the machine with agent_id."
            )
        if multi_user_session:
            raise NotSupportedError(
                "multi_user_session=True is not supported: a session belongs to the user who "
                "started it; start one session per user."
            )
        if is_branch:
            raise NotSupportedError(
                "is_branch=True is not supported: appyard runs published releases; publish the "
                "branch (appyard app publish PATH) and pass app_version=<its version>, or None "
                "for the newest."
            )
        if restart_policy != "never":
            raise NotSupportedError(
                f"restart_policy={restart_policy!r} is not supported: appyard does not restart "
                "sessions; run the app in a pipeline step with retries instead "
                "(docs/pipelines.md)."
            )
        wanted = [users] if isinstance(users, int) else list(users or [])
        if wanted:
            me = self._ay.user.me().id
            if any(u != me for u in wanted):
                raise NotSupportedError(
                    "users_id for another user is not supported: a session runs as the token's "
                    "user; start it with a token of that user."
                )
        if app_id is not None:
            module_id = self.get_info_by_id(app_id).module_id
        return self._ay.app.start(
            agent_id=agent_id,
            workspace_id=workspace_id,
            description=description,
            params=params,
            log_level=log_level,
            app_version=app_version or None,
            task_name=task_name,
            module_id=module_id,
        )

    def start(  # type: ignore[override]  # the reference's AppApi.start returns a SessionInfo
        self,
        agent_id: int | None,
        app_id: int | None = None,
        workspace_id: int | None = None,
        description: str = "",
        params: dict[str, Any] | None = None,
        log_level: str = "info",
        users_id: int | list[int] | None = None,
        app_version: str | None = None,
        is_branch: bool = False,
        task_name: str = "run-from-python",
        restart_policy: str = "never",
        proxy_keep_url: bool = False,
        module_id: int | None = None,
        redirect_requests: dict[str, int] | None = None,
        kubernetes_settings: Any = None,
        multi_user_session: bool = False,
    ) -> SessionInfo:
        """Start a session of the app; ``SessionInfo(task_id, user_id, module_id, app_id,
        details={})``. ``proxy_keep_url`` and ``redirect_requests`` have no effect."""
        return self._start(
            agent_id=agent_id,
            app_id=app_id,
            workspace_id=workspace_id,
            description=description,
            params=params,
            log_level=log_level,
            users=users_id,
            app_version=app_version,
            is_branch=is_branch,
            task_name=task_name,
            restart_policy=restart_policy,
            module_id=module_id,
            kubernetes_settings=kubernetes_settings,
            multi_user_session=multi_user_session,
        )

    def wait(  # the reference's names: attempts, attempt_delay_sec
        self,
        id: int,
        target_status: _Status | str | None = None,
        attempts: int | None = None,
        attempt_delay_sec: float | None = None,
    ) -> _Status:
        return self._ay.app.wait(id, target_status, attempts, attempt_delay_sec)

    def get_sessions(
        self,
        team_id: int,
        module_id: int,
        show_disabled: bool = False,
        session_name: str | None = None,
        statuses: Iterable[_Status | str] | None = None,
        with_shared: bool = False,
    ) -> list[SessionInfo]:
        """Sessions of the app in the team, newest first; ``details`` is the task record in
        the reference's shape (our fields beside)."""
        sessions = self._ay.app.get_sessions(
            team_id, module_id, session_name=session_name, statuses=statuses
        )
        return [
            s._replace(details=self._api._record(OurTask.model_validate(s.details)))
            for s in sessions
        ]

    def get_url(self, task_id: int) -> str:
        """The session's web page through the server."""
        return f"{self._api.server_address}/apps/{task_id}/"

    # -- readiness ------------------------------------------------------------------------------

    def is_ready_for_api_calls(self, task_id: int) -> bool:
        """True when the session runs and said it is ready (its ``ready`` flag); False
        otherwise, also for an unknown task (the reference answers False on any failure)."""
        try:
            return bool(self._ay.task.is_ready_for_api_calls(task_id))
        except AppyardError:
            return False

    def wait_until_ready_for_api_calls(
        self, task_id: int, attempts: int = 10, attempt_delay_sec: float | None = 10
    ) -> bool:
        """Wait (pushed, not polled) up to ``attempts * attempt_delay_sec`` seconds for the
        session to be ready; True when it is, False when time ran out or it ended."""
        return bool(
            self._ay.app.wait_until_ready_for_api_calls(task_id, attempts, attempt_delay_sec)
        )

    def get_session_token(self, slug: str) -> str:
        raise NotSupportedError(
            "get_session_token is not supported: appyard has no session tokens; a session's "
            "page is at api.app.get_url(task_id), requests go through api.task.send_request."
        )

    def initialize(self, task_id: int, template: Any, data: Any = None, state: Any = None) -> Any:
        raise NotSupportedError(
            "initialize (v1 app UIs) is not supported: appyard apps serve their own page."
        )
