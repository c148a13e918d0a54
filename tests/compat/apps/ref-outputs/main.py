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
# as the reference's own helpers do: the uploaded file's id, then the output by that id
file_info = api.file.get_info_by_id(info.id)
assert file_info is not None and file_info.path == "/compat/result.txt", file_info
assert file_info.sizeb == 4, file_info
api.task.set_output_archive(task_id, file_info.id, "result.txt")
sly.logger.info("finished", extra={"task_id": task_id})
