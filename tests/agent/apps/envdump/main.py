"""Prints what the agent gave it (env, interpreter, cwd) as one JSON line, then N lines."""

import importlib
import json
import os
import sys
import time

state = json.loads(os.environ["MODAL_STATE"])
keys = [
    "SERVER_ADDRESS",
    "TASK_ID",
    "TEAM_ID",
    "WORKSPACE_ID",
    "AGENT_ID",
    "USER_ID",
    "APP_NAME",
    "PROJECT_ID",
    "LOG_LEVEL",
    "APP_PORT",
    "APP_DIR",
    "PYTHONUNBUFFERED",
    "CONTEXT",
    "modal.state.projectId",
    "context.teamId",
]
info: dict[str, object] = {k: os.environ.get(k) for k in keys}
info["has_token"] = bool(os.environ.get("API_TOKEN"))
info["python"] = sys.executable
info["cwd"] = os.getcwd()
if state.get("import"):
    info["imported"] = importlib.import_module(state["import"]).VERSION
print(json.dumps(info))
for i in range(int(state.get("lines", 0))):
    print(f"n {i}")
time.sleep(float(state.get("sleep_s", 0)))
