"""The run's screenshots folder: emptied of an earlier run's pictures once, when the run starts
(in the controlling process: pytest-xdist's workers share the folder), and counted at its end
(``tests/conftest.py``); the browser tests write into it (``tests/web/conftest.py``)."""

from __future__ import annotations

import os
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHOTS = Path(os.environ.get("APPYARD_SCREENSHOTS") or REPO / "test-artifacts" / "screenshots")
#: a picture ``shot`` writes (others in the folder are not ours to delete)
SHOT_NAME = re.compile(r"^\d\d-.+-(wide|narrow)\.png$")


def clear_old() -> None:
    """Delete an earlier run's pictures."""
    for old in [*SHOTS.glob("*.png"), *SHOTS.glob("failures/*.png")]:
        if old.parent.name == "failures" or SHOT_NAME.match(old.name):
            old.unlink(missing_ok=True)


def written_since(start: float) -> int:
    """How many pictures were written since ``start`` (a ``time.time()``)."""
    count = 0
    for path in [*SHOTS.glob("*.png"), *SHOTS.glob("failures/*.png")]:
        try:
            count += path.stat().st_mtime >= start
        except OSError:
            continue
    return count
