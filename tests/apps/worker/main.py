"""Configurable test app (its state says what to do); writes its pids so tests can check them."""

import json
import os
import signal
import subprocess
import sys
import time

state = json.loads(os.environ["MODAL_STATE"])
if state.get("ignore_sigterm"):
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
pids = [os.getpid()]
if state.get("spawn_child"):
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import signal,time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)",
        ]
    )
    pids.append(child.pid)
if state.get("pidfile"):
    tmp = state["pidfile"] + ".tmp"
    with open(tmp, "w") as f:
        json.dump(pids, f)
    os.replace(tmp, state["pidfile"])
if state.get("record"):
    with open(state["record"], "a") as f:
        f.write(os.environ["TASK_ID"] + "\n")
for i in range(int(state.get("lines", 3))):
    print(f"line {i}")
if state.get("ready"):
    import appyard as ay

    ay.AppSession.from_env().ready()
    print("ready")
deadline = time.monotonic() + float(state.get("sleep_s", 0))
while time.monotonic() < deadline:
    time.sleep(0.05)
print("bye", file=sys.stderr)
sys.exit(int(state.get("exit_code", 0)))
