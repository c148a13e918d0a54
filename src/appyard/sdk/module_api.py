"""``api.module``: the catalog — list, look up, publish releases, fetch archives."""

from __future__ import annotations

import os

from appyard.errors import ModuleNotFoundInEcosystem, NotFoundError
from appyard.schemas.ecosystem import PublishResult
from appyard.sdk._core import RequestSpec, SyncCore
from appyard.sdk.archive import build_archive
from appyard.sdk.module_info import ModuleInfo


class ModuleApi:
    """Modules (apps) of the ecosystem and their releases."""

    def __init__(self, core: SyncCore) -> None:
        self._core = core

    def get_list(self, slug: str | None = None, q: str | None = None) -> list[ModuleInfo]:
        """The catalog, optionally filtered by exact slug or a search text."""
        data = self._core.request("GET", "/modules", params={"slug": slug, "q": q})
        return [ModuleInfo.from_wire(item) for item in data]

    def get(self, module_id: int, version: str | None = None) -> ModuleInfo:
        """One module with the manifest of ``version`` (the newest by default)."""
        data = self._core.request("GET", f"/modules/{int(module_id)}", params={"version": version})
        return ModuleInfo.from_wire(data)

    def lookup(self, slug: str) -> int:
        """Slug -> module id; an unknown slug raises ``ModuleNotFoundInEcosystem``."""
        try:
            data = self._core.request("GET", "/modules/lookup", params={"slug": slug})
        except NotFoundError:
            raise ModuleNotFoundInEcosystem(
                f"Module {slug} not found in ecosystem", status_code=404
            ) from None
        return int(data["id"])

    def resolve(self, slug_or_id: str | int) -> int:
        """A module id from either its id or its slug (what the CLI accepts)."""
        if isinstance(slug_or_id, int) or str(slug_or_id).isdigit():
            return int(slug_or_id)
        return self.lookup(str(slug_or_id))

    def publish(self, path: str | os.PathLike[str]) -> PublishResult:
        """Upload the app folder as a release; the same content twice makes no new release."""
        return self.publish_archive(build_archive(path))

    def publish_archive(self, archive: bytes) -> PublishResult:
        """Upload a ready ``tar.gz``; safe to retry (the server dedupes by content)."""
        files = {"archive": ("app.tar.gz", archive, "application/gzip")}
        data = self._core.request(
            "POST", "/modules", files=files, idempotent=True, timeout=max(60.0, self._core.timeout)
        )
        return PublishResult.model_validate(data)

    def download_archive(self, sha256: str) -> bytes:
        """A release's archive by its sha256."""
        spec = RequestSpec("GET", f"/releases/{sha256}/archive", timeout=300.0)
        return self._core.send(spec).content
