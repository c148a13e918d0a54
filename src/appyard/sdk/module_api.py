"""``api.module``: the catalog — list, look up, publish releases, fetch archives.

``ModuleApi`` and ``AsyncModuleApi`` are thin shells over the same calls (``_calls.modules``).
"""

from __future__ import annotations

import os

from appyard.schemas.ecosystem import PublishResult
from appyard.sdk._async import AsyncCore
from appyard.sdk._calls import modules as calls
from appyard.sdk._calls.effects import twin_of
from appyard.sdk._sync import SyncCore
from appyard.sdk.module_info import ModuleInfo


class ModuleApi:
    """Modules (apps) of the ecosystem and their releases."""

    def __init__(self, core: SyncCore) -> None:
        self._core = core

    def get_list(self, slug: str | None = None, q: str | None = None) -> list[ModuleInfo]:
        """The catalog, optionally filtered by exact slug or a search text."""
        return self._core.run(calls.get_list(slug, q))

    def get(self, module_id: int, version: str | None = None) -> ModuleInfo:
        """One module with the manifest of ``version`` (the newest by default)."""
        return self._core.run(calls.get(module_id, version))

    def lookup(self, slug: str) -> int:
        """Slug -> module id; an unknown slug raises ``ModuleNotFoundInEcosystem``."""
        return self._core.run(calls.lookup(slug))

    def resolve(self, slug_or_id: str | int) -> int:
        """A module id from either its id or its slug (what the CLI accepts)."""
        return self._core.run(calls.resolve(slug_or_id))

    def publish(
        self,
        path: str | os.PathLike[str],
        team_id: int | None = None,
        public: bool | None = None,
    ) -> PublishResult:
        """Upload the app folder as a release; the same content twice makes no new release.

        A new module is ``team_id``'s (default: your one team; an instance admin's, with no
        team, is the instance's and public) and private to it; ``public=True`` (instance
        admins only) lets every team see and run it.
        """
        return self._core.run(calls.publish(path, team_id, public))

    def publish_archive(
        self, archive: bytes, team_id: int | None = None, public: bool | None = None
    ) -> PublishResult:
        """Upload a ready ``tar.gz``; safe to retry (the server dedupes by content)."""
        return self._core.run(calls.publish_archive(archive, team_id, public))

    def download_archive(self, sha256: str) -> bytes:
        """A release's archive by its sha256."""
        return self._core.run(calls.download_archive(sha256))


@twin_of(ModuleApi)
class AsyncModuleApi:
    def __init__(self, core: AsyncCore) -> None:
        self._core = core

    async def get_list(self, slug: str | None = None, q: str | None = None) -> list[ModuleInfo]:
        return await self._core.run(calls.get_list(slug, q))

    async def get(self, module_id: int, version: str | None = None) -> ModuleInfo:
        return await self._core.run(calls.get(module_id, version))

    async def lookup(self, slug: str) -> int:
        return await self._core.run(calls.lookup(slug))

    async def resolve(self, slug_or_id: str | int) -> int:
        return await self._core.run(calls.resolve(slug_or_id))

    async def publish(
        self,
        path: str | os.PathLike[str],
        team_id: int | None = None,
        public: bool | None = None,
    ) -> PublishResult:
        return await self._core.run(calls.publish(path, team_id, public))

    async def publish_archive(
        self, archive: bytes, team_id: int | None = None, public: bool | None = None
    ) -> PublishResult:
        return await self._core.run(calls.publish_archive(archive, team_id, public))

    async def download_archive(self, sha256: str) -> bytes:
        return await self._core.run(calls.download_archive(sha256))
