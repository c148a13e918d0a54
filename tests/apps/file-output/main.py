"""Test app: uploads a file with its task token and points an output at it."""

import tempfile

import appyard as ay
from appyard.errors import BadRequestError

session = ay.AppSession.from_env()
team_id = ay.env.team_id()
path = session.state["path"]
with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
    f.write(session.state["text"])
print("uploaded", session.api.file.upload(team_id, f.name, path).path)
try:
    session.set_output_file("missing", path + ".missing")
except BadRequestError as exc:
    print("refused", exc.field)
session.set_output_file("result", path)
print("done")
