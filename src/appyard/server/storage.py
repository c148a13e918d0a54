"""Release archives on disk, addressed by their sha256."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


class ReleaseStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def path(self, sha256: str) -> Path:
        return self.root / f"{sha256}.tar.gz"

    def put(self, sha256: str, data: bytes) -> Path:
        """Write atomically: a reader never sees half an archive."""
        target = self.path(sha256)
        if target.exists():
            return target
        fd, tmp = tempfile.mkstemp(dir=self.root, suffix=".part")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return target
