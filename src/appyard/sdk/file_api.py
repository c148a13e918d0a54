"""``api.file``: the team's files (docs/data.md)."""

from __future__ import annotations

from appyard.sdk._core import SyncCore


class FileApi:
    """Upload, download, list and remove team files; paths are team-relative."""

    def __init__(self, core: SyncCore) -> None:
        self._core = core
