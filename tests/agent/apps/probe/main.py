"""Tries what its state says and prints one JSON line per try (read a path, connect, daemon)."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from urllib.parse import urlsplit

state = json.loads(os.environ["MODAL_STATE"])


def say(**fields: object) -> None:
    print(json.dumps(fields), flush=True)


if state.get("on_term"):

    def on_term(signum: int, frame: object) -> None:
        say(event="sigterm")
        sys.exit(0)

    signal.signal(signal.SIGTERM, on_term)

for path in state.get("paths", []):
    try:
        if os.path.isdir(path):
            seen: object = sorted(os.listdir(path))
        else:
            with open(path, "rb") as f:
                seen = f.read(200).decode(errors="replace")
    except OSError as e:
        seen = None
        say(path=path, error=type(e).__name__)
    else:
        say(path=path, seen=seen)

say(home=os.environ.get("HOME"), has_token=bool(os.environ.get("API_TOKEN")), cwd=os.getcwd())

if state.get("connect"):
    url = urlsplit(os.environ["SERVER_ADDRESS"])
    try:
        socket.create_connection((url.hostname, url.port or 80), timeout=5).close()
        say(connect="ok")
    except OSError as e:
        say(connect=type(e).__name__)

if state.get("output"):
    import appyard as ay

    ay.AppSession.from_env().set_output("reached", True)

if state.get("daemon"):
    # a double fork into a session of its own: what a daemon does to outlive its parent
    code = "import os, time\nif os.fork() == 0:\n    os.setsid()\n    time.sleep(600)\n"
    subprocess.run([sys.executable, "-c", code, state["daemon"]], check=True)
    say(daemon="started")

deadline = time.monotonic() + float(state.get("sleep_s", 0))
while time.monotonic() < deadline:
    time.sleep(0.05)
