"""Test app: prints ``lines`` numbered lines (its state says how many), then a last one."""

import json
import os
import sys

lines = int(json.loads(os.environ["MODAL_STATE"]).get("lines", 100000))
out = sys.stdout
for i in range(1, lines):
    out.write(f"line {i} of {lines}\n")
out.write(f"last line: {lines} of {lines}\n")
out.flush()
