# ruff: noqa: I001  (the imports are the reference style's, verbatim)
"""A script in the reference's style that drives an export app end to end: picks an available
agent, starts the app on a project, waits, reads the session's output block from the task
record (``meta.output.general``), downloads the archive, and lists the app's sessions and the
workspace's tasks. Only ``import supervisely as sly`` is replaced by ``import appyard.compat as
sly``; the env file and the app slug are ours."""

import os
from dotenv import load_dotenv
import appyard.compat as sly
from appyard.compat.api.task_api import TaskApi

if sly.is_development():
    load_dotenv(os.path.expanduser("~/appyard.env"))

api = sly.Api.from_env()

team_id = sly.env.team_id()
workspace_id = sly.env.workspace_id()
project_id = sly.env.project_id()

team: sly.TeamInfo = api.team.get_info_by_id(team_id)
workspace: sly.WorkspaceInfo = api.workspace.get_info_by_id(workspace_id)
me: sly.UserInfo = api.user.get_my_info()
sly.logger.info(
    "Connected", extra={"team": team.name, "workspace": workspace.name, "user": me.login}
)

agents = api.agent.get_list_available(team_id, show_only_running=True)
if len(agents) == 0:
    raise RuntimeError("No agents available")
agent: sly.AgentInfo = agents[0]
print("agent status:", api.agent.get_status(agent.id))

module_id = api.app.get_ecosystem_module_id("appyard/export-to-pascal-voc")
module_info: sly.ModuleInfo = api.app.get_ecosystem_module_info(module_id)
params = module_info.get_arguments(images_project=project_id)

session: sly.SessionInfo = api.app.start(
    agent_id=agent.id,
    module_id=module_id,
    workspace_id=workspace_id,
    task_name="export from script",
    params=params,
    app_version=None,
    is_branch=False,
)
sly.logger.info(f"Session started: {session.task_id}")
api.task.wait(session.task_id, target_status=TaskApi.Status.FINISHED)

task_info = api.task.get_info_by_id(session.task_id)
print("status:", task_info["status"])
print("app:", task_info["meta"]["app"]["name"])
print("session name:", task_info["meta"]["name"])
output = task_info["meta"]["output"]["general"]
print("output title:", output["title"])
print("output is a download:", output["download"])

data_dir = sly.app.get_data_dir()
local = os.path.join(data_dir, output["title"])
api.file.download(team_id, output["path"], local)
print("downloaded bytes > 0:", sly.fs.get_file_size(local) > 0)

for s in api.app.get_sessions(team_id, module_id, statuses=[api.task.Status.FINISHED]):
    print("session:", s.task_id, s.details["meta"]["name"], s.details["status"])

tasks = api.task.get_list(
    workspace_id, filters=[{"field": "status", "operator": "=", "value": "finished"}]
)
print("finished tasks in workspace:", [t["id"] for t in tasks])
