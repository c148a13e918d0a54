"""The ``appyard`` command, run as a real process (against a real server where it needs one)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from appyard.agent.exit_codes import RET_REFUSED, meaning
from appyard.cli.children import Child
from tests.sdk.helpers import PASCAL_CONFIG, FakeAgent, Tenant
from tests.support import ServerProc

CLIENT_VARS = ("SERVER_ADDRESS", "API_TOKEN", "TEAM_ID", "WORKSPACE_ID", "AGENT_ID", "TASK_ID")


def appyard(
    *args: str, env: dict[str, str] | None = None, input: str | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k not in CLIENT_VARS}
    base.update({"COLUMNS": "200", "NO_COLOR": "1", "APPYARD_ENV_FILE": "/nonexistent/a.env"})
    return subprocess.run(
        [sys.executable, "-m", "appyard.cli", *args],
        env={**base, **(env or {})},
        capture_output=True,
        text=True,
        input=input,
        timeout=timeout,
    )


def creds(server: ServerProc, tenant: Tenant | None = None) -> dict[str, str]:
    env = {"SERVER_ADDRESS": server.url, "API_TOKEN": server.admin_token}
    if tenant is not None:
        env.update(TEAM_ID=str(tenant.team_id), WORKSPACE_ID=str(tenant.workspace_id))
    return env


def test_no_credentials_is_one_clear_line() -> None:
    out = appyard("team", "list")
    assert out.returncode == 1
    assert "error: File not found: '/nonexistent/a.env'" in out.stderr
    assert "Traceback" not in out.stderr


def test_publish_checks_the_folder_locally(tmp_path: Path) -> None:
    out = appyard("app", "publish", str(tmp_path))
    assert out.returncode == 2
    assert "config.json not found" in out.stderr
    (tmp_path / "config.json").write_text("{}")
    out = appyard("app", "publish", str(tmp_path))
    assert out.returncode == 2 and "has no 'name'" in out.stderr


def test_env_file_gives_credentials_and_defaults(server: ServerProc, tmp_path: Path) -> None:
    env_file = tmp_path / "appyard.env"
    env_file.write_text(f"SERVER_ADDRESS={server.url}\nAPI_TOKEN={server.admin_token}\n")
    out = appyard("user", "me", env={"APPYARD_ENV_FILE": str(env_file)})
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("admin (id 1, admin)")


def test_publish_twice_makes_one_release(server: ServerProc, tmp_path: Path) -> None:
    app = tmp_path / "hello"
    app.mkdir()
    (app / "config.json").write_text(
        json.dumps({"name": "Hello", "slug": "cli/hello", "main_script": "main.py"})
    )
    (app / "main.py").write_text("print('hello')\n")
    (app / "__pycache__").mkdir()
    (app / "__pycache__" / "main.cpython-311.pyc").write_bytes(b"junk")
    first = appyard("app", "publish", str(app), env=creds(server))
    assert first.returncode == 0, first.stderr
    assert "Published cli/hello version r1" in first.stdout
    (app / "__pycache__" / "other.pyc").write_bytes(b"more junk")  # skipped: same content
    again = appyard("app", "publish", str(app), env=creds(server))
    assert again.returncode == 0, again.stderr
    assert "Already published: cli/hello version r1" in again.stdout
    listing = appyard("app", "list", env=creds(server))
    assert "cli/hello" in listing.stdout


def test_accounts_commands(server: ServerProc) -> None:
    env = creds(server)
    out = appyard("team", "create", "cli-team", env=env)
    assert out.returncode == 0, out.stderr
    team_id = re.search(r"id (\d+)", out.stdout)
    assert team_id is not None
    env["TEAM_ID"] = team_id.group(1)
    assert "cli-team" in appyard("team", "list", env=env).stdout
    out = appyard("workspace", "create", "cli-ws", env=env)
    assert out.returncode == 0 and "cli-ws" in appyard("workspace", "list", env=env).stdout
    out = appyard("user", "create", "bob", "--password", env=env, input="s3cret-pass\n" * 2)
    assert out.returncode == 0, out.stderr
    user_id = re.search(r"id (\d+)", out.stdout)
    assert user_id is not None
    out = appyard("token", "create", "--user", user_id.group(1), "--name", "bob-cli", env=env)
    assert out.returncode == 0, out.stderr
    bob_token = out.stdout.strip()
    assert len(bob_token) > 20
    me = appyard("user", "me", env={**env, "API_TOKEN": bob_token})
    assert me.stdout.startswith("bob (id")
    out = appyard("team", "add-member", "bob", "--role", "viewer", env=env)
    assert out.returncode == 0 and "bob is viewer" in out.stdout, out.stderr
    assert "bob" in appyard("team", "members", env=env).stdout
    out = appyard("agent", "create", "gpu-box", env=env)
    assert out.returncode == 0, out.stderr
    assert "shown only this once" in out.stdout
    assert f"appyard agent run --server {server.url} --token " in out.stdout
    assert "gpu-box" in appyard("agent", "list", env=env).stdout


def test_agent_run_with_a_refused_token_exits_with_its_named_code(
    server: ServerProc, tmp_path: Path
) -> None:
    """``appyard agent run`` runs the real agent, whose exit code ``appyard up`` then names."""
    out = appyard(
        "agent",
        "run",
        "--server",
        server.url,
        "--token",
        "not-an-agent-token",
        env={"APPYARD_HOME": str(tmp_path)},
    )
    assert out.returncode == RET_REFUSED, out.stderr
    assert "refused the agent's hello" in out.stderr
    agent = Child("agent", [], {}, signal.SIGHUP, explain_exit=meaning)
    assert agent.exit_text(out.returncode) == (
        "the agent exited with code 3 "
        "(the server refused it: a bad or revoked token, or the agent was deleted)"
    )
    assert agent.exit_text(-9) == "the agent exited with code -9"  # a signal: no name


def test_start_wait_sessions_logs(server: ServerProc, tenant: Tenant, agent: FakeAgent) -> None:
    env = creds(server, tenant)
    project_id = tenant.api.project.create(tenant.workspace_id, "cli").id
    out = appyard("app", "start", PASCAL_CONFIG["slug"], env=env)  # type: ignore[arg-type]
    assert out.returncode == 2
    assert "target argument has to be defined" in out.stderr

    def play() -> None:
        task = agent.take(30)
        assert task.state == {
            "pascalContourThickness": 3,
            "trainSplitCoef": 0.5,
            "projectId": project_id,
        }
        agent.started(task.task_id)
        agent.log(task.task_id, "[bold]not markup[/bold]", "exported 3 images")
        agent.exited(task.task_id, 0)

    player = threading.Thread(target=play, daemon=True)
    player.start()
    out = appyard(
        "app", "start", str(tenant.module_id), "--target", f"images_project={project_id}",
        "--param", "trainSplitCoef=0.5", "--agent", str(tenant.agent_id), "--wait", env=env,
    )  # fmt: skip
    player.join(10)
    assert out.returncode == 0, out.stderr
    match = re.search(r"task (\d+)", out.stdout)
    assert match is not None
    task_id = match.group(1)
    assert f"Task {task_id}: finished" in out.stdout

    sessions = appyard("app", "sessions", "--status", "finished", env=env)
    assert sessions.returncode == 0 and task_id in sessions.stdout
    # at 80 columns the row's id, status and whole creation time share its first line
    narrow = appyard("app", "sessions", "--status", "finished", env={**env, "COLUMNS": "80"})
    assert narrow.returncode == 0, narrow.stderr
    lines = narrow.stdout.splitlines()
    assert all(len(line) <= 80 for line in lines), narrow.stdout
    row = next(line for line in lines if f" {task_id} " in line)
    assert "finished" in row and re.search(
        r"│ (\d\d:\d\d:\d\d|\d\d-\d\d \d\d:\d\d|\d{4}-\d\d-\d\d) +│", row
    ), narrow.stdout
    logs = appyard("app", "logs", task_id, env=env)
    assert "[bold]not markup[/bold]" in logs.stdout and "exported 3 images" in logs.stdout
    followed = appyard("app", "logs", task_id, "--follow", env=env)
    assert followed.returncode == 0 and "exported 3 images" in followed.stdout
    info = appyard("task", "info", task_id, env=env)
    assert json.loads(info.stdout)["status"] == "finished"


def test_wait_exit_codes(server: ServerProc, tenant: Tenant, agent: FakeAgent) -> None:
    env = creds(server, tenant)
    api = tenant.api
    module = api.app.get_ecosystem_module_info(tenant.module_id)
    project_id = api.project.create(tenant.workspace_id, "cli").id
    failing = api.app.start(
        module_id=tenant.module_id,
        workspace_id=tenant.workspace_id,
        params=module.get_arguments(images_project=project_id),
    ).task_id
    agent.take()
    agent.started(failing)
    agent.log(failing, "KeyError: 'x'", level="error")
    agent.exited(failing, 3)
    out = appyard("app", "wait", str(failing), env=env)
    assert out.returncode == 1
    assert "Task finished with status error" in out.stderr and "KeyError: 'x'" in out.stderr

    queued = api.app.start(
        module_id=tenant.module_id,
        workspace_id=tenant.workspace_id,
        params=module.get_arguments(images_project=project_id),
    ).task_id
    out = appyard("app", "wait", str(queued), "--timeout", "0.5", env=env)
    assert out.returncode == 124
    out = appyard("app", "stop", str(queued), env=env)
    assert out.returncode == 0 and f"Task {queued}: stopped" in out.stdout
    out = appyard("app", "wait", str(queued), env=env)
    assert out.returncode == 2


@pytest.mark.parametrize("args", [["--version"], ["--help"], ["app", "--help"]])
def test_help_and_version(args: list[str]) -> None:
    out = appyard(*args)
    assert out.returncode == 0, out.stderr


def test_team_admin_commands(server: ServerProc) -> None:
    """token list --team / revoke, team remove-member, user disable / enable, agent
    rotate-token."""
    env = creds(server)
    out = appyard("team", "create", "admin-cli", env=env)
    team = re.search(r"id (\d+)", out.stdout)
    assert out.returncode == 0 and team is not None, out.stderr
    env["TEAM_ID"] = team.group(1)
    out = appyard("user", "create", "carol", env=env)
    carol_id = re.search(r"id (\d+)", out.stdout)
    assert out.returncode == 0 and carol_id is not None, out.stderr
    assert appyard("team", "add-member", "carol", env=env).returncode == 0
    carol = appyard(
        "token", "create", "--user", carol_id.group(1), "--name", "carol", env=env
    ).stdout.strip()
    listed = appyard("token", "list", "--team", env["TEAM_ID"], env=env)
    assert listed.returncode == 0 and f"user {carol_id.group(1)}" in listed.stdout, listed.stderr
    token_id = re.search(rf"(\d+)\W+carol\W+user\W+user {carol_id.group(1)}\b", listed.stdout)
    assert token_id is not None, listed.stdout
    out = appyard("token", "revoke", token_id.group(1), env=env)
    assert out.returncode == 0, out.stderr
    assert appyard("user", "me", env={**env, "API_TOKEN": carol}).returncode != 0
    out = appyard("team", "remove-member", "carol", env=env)
    assert out.returncode == 0 and "no longer a member" in out.stdout, out.stderr
    assert "carol" not in appyard("team", "members", env=env).stdout
    out = appyard("user", "disable", "carol", env=env)
    assert out.returncode == 0 and "disabled" in out.stdout, out.stderr
    assert re.search(r"carol\W+yes", appyard("user", "list", env=env).stdout)
    assert appyard("user", "enable", carol_id.group(1), env=env).returncode == 0
    out = appyard("agent", "create", "rotor", env=env)
    agent_id = re.search(r"id (\d+)", out.stdout)
    old = re.search(r"--token (\S+)", out.stdout)
    assert agent_id is not None and old is not None, out.stdout
    out = appyard("agent", "rotate-token", agent_id.group(1), env=env)
    new = re.search(r"--token (\S+)", out.stdout)
    assert out.returncode == 0 and new is not None and new.group(1) != old.group(1), out.stderr
