"""Holds ``memory_mb`` of resident memory, grows it by ``grow_mb_s`` a second, and burns a core
in a child process (so that usage is summed over processes), for ``seconds``."""

import json
import os
import subprocess
import sys
import time

state = json.loads(os.environ.get("MODAL_STATE") or "{}")
seconds = float(state.get("seconds", 30))
burner = None
if state.get("burn", True):
    code = f"import time\nend = time.monotonic() + {seconds!r}\nwhile time.monotonic() < end: pass"
    burner = subprocess.Popen([sys.executable, "-c", code])
held = [bytearray(int(state.get("memory_mb", 0)) * 1024 * 1024)]
for block in held:  # touch every page: resident, not only reserved
    for i in range(0, len(block), 4096):
        block[i] = 1
print(f"holding {state.get('memory_mb', 0)} MB", flush=True)
grow = int(state.get("grow_mb_s", 0))
end = time.monotonic() + seconds
while time.monotonic() < end:
    time.sleep(1)
    if grow:
        block = bytearray(grow * 1024 * 1024)
        for i in range(0, len(block), 4096):
            block[i] = 1
        held.append(block)
        print(f"holding {sum(len(b) for b in held) // 2**20} MB", flush=True)
if burner is not None:
    burner.wait()
print("done", flush=True)
