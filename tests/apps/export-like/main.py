"""Test app with the seed's manifest shape: shows what it was started with, then exits 0."""

import json
import os

state = json.loads(os.environ["MODAL_STATE"])
print("project", os.environ.get("PROJECT_ID"))
print("state", json.dumps(state, sort_keys=True))
