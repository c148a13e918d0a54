"""Hello: greet, count with progress, set an output. Stops cleanly on SIGTERM."""

import signal
import sys
import time

import appyard as ay

session = ay.AppSession.from_env()
state = session.state
name = str(state.get("name", "world"))
count = int(state.get("count", 5))
delay = float(state.get("delay_s", 0.2))
style = str(state.get("style", "plain"))
STYLES = {"plain": str, "shout": str.upper, "whisper": str.lower}
greeting = STYLES.get(style, str)(f"Hello, {name}!")


def _stop(signum, frame):
    print("asked to stop; leaving after", session.task_id, flush=True)
    sys.exit(0)


signal.signal(signal.SIGTERM, _stop)
print(greeting)
with session.progress_bar(total=count, message="counting") as bar:
    for i in range(1, count + 1):
        time.sleep(delay)
        print(f"{i} of {count}")
        bar.update(1)
        done = i
session.set_output("greeting", greeting)
print("done")
