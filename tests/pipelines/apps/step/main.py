"""Test app for pipelines: its state says what to do (outputs to set, how long to sleep, how to end).

``fail_first``: a file path; the first attempt (the file is not there yet) makes it and fails.
``slow_first``: the same, but the first attempt sleeps a minute.
"""

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request

state = json.loads(os.environ["MODAL_STATE"])
if state.get("ignore_sigterm"):
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
if state.get("spawn_child"):
    subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import signal,time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)",
        ]
    )
print("echo", json.dumps(state.get("echo")), flush=True)
marker = state.get("fail_first")
if marker and not os.path.exists(marker):
    with open(marker, "w") as f:
        f.write(os.environ["TASK_ID"])
    print("first attempt: failing", flush=True)
    sys.exit(3)
if state.get("outputs"):
    request = urllib.request.Request(
        f"{os.environ['SERVER_ADDRESS']}/api/v1/tasks/{os.environ['TASK_ID']}/outputs",
        data=json.dumps({"outputs": state["outputs"]}).encode(),
        headers={
            "Authorization": f"Bearer {os.environ['API_TOKEN']}",
            "Content-Type": "application/json",
        },
        method="POST",
    )
    urllib.request.urlopen(request, timeout=30).read()
sleep_s = float(state.get("sleep_s") or 0)
slow = state.get("slow_first")
if slow and not os.path.exists(slow):  # the first attempt takes long; later ones do not
    with open(slow, "w") as f:
        f.write(os.environ["TASK_ID"])
    sleep_s = 60.0
deadline = time.monotonic() + sleep_s
while time.monotonic() < deadline:
    time.sleep(0.05)
sys.exit(int(state.get("exit_code") or 0))
