"""An app written in the reference's style (``import appyard.compat as sly``)."""

import os

import appyard.compat as sly

api = sly.Api.from_env()
task_id = sly.env.task_id()
team_id = sly.env.team_id()
data_dir = sly.app.get_data_dir()
local = os.path.join(data_dir, "result.txt")
with open(local, "w") as f:
    f.write("done")
info = api.file.upload(team_id, local, "/compat/result.txt")
api.task.set_field(task_id, "data.count", 3)
api.task.set_field(task_id, "data.items", [1], append=True)
api.task.set_field(task_id, "data.items", 2, append=True)
api.task.set_output_archive(task_id, info.path, "result.txt")
sly.logger.info("finished", extra={"task_id": task_id})
