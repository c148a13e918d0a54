"""``api.project``, ``api.dataset``, ``api.image``, ``api.annotation`` (docs/data.md)."""

from __future__ import annotations

from appyard.sdk._core import SyncCore


class ProjectApi:
    def __init__(self, core: SyncCore) -> None:
        self._core = core


class DatasetApi:
    def __init__(self, core: SyncCore) -> None:
        self._core = core


class ImageApi:
    def __init__(self, core: SyncCore) -> None:
        self._core = core


class AnnotationApi:
    def __init__(self, core: SyncCore) -> None:
        self._core = core
