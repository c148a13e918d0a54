"""The calls of ``api.module``: the catalog — list, look up, publish releases, fetch archives."""

from __future__ import annotations

import os

from appyard.errors import ModuleNotFoundInEcosystem, NotFoundError
from appyard.schemas.ecosystem import PublishResult
from appyard.sdk._calls.effects import Fetch, Offload, Op, request
from appyard.sdk._core import RequestSpec
from appyard.sdk.archive import build_archive
from appyard.sdk.module_info import ModuleInfo

#: a publish uploads an archive: allow it at least this long
PUBLISH_TIMEOUT_S = 60.0
ARCHIVE_TIMEOUT_S = 300.0


def get_list(slug: str | None, q: str | None) -> Op[list[ModuleInfo]]:
    data = yield from request("GET", "/modules", params={"slug": slug, "q": q})
    return [ModuleInfo.from_wire(item) for item in data]


def get(module_id: int, version: str | None) -> Op[ModuleInfo]:
    data = yield from request("GET", f"/modules/{int(module_id)}", params={"version": version})
    return ModuleInfo.from_wire(data)


def lookup(slug: str) -> Op[int]:
    try:
        data = yield from request("GET", "/modules/lookup", params={"slug": slug})
    except NotFoundError:
        raise ModuleNotFoundInEcosystem(
            f"Module {slug} not found in ecosystem", status_code=404
        ) from None
    return int(data["id"])


def resolve(slug_or_id: str | int) -> Op[int]:
    if isinstance(slug_or_id, int) or str(slug_or_id).isdigit():
        return int(slug_or_id)
    return (yield from lookup(str(slug_or_id)))


def publish(
    path: str | os.PathLike[str], team_id: int | None = None, public: bool | None = None
) -> Op[PublishResult]:
    archive = yield Offload(lambda: build_archive(path))
    return (yield from publish_archive(archive, team_id, public))


def publish_archive(
    archive: bytes, team_id: int | None = None, public: bool | None = None
) -> Op[PublishResult]:
    files: dict[str, tuple[str | None, bytes | str] | tuple[str, bytes, str]] = {
        "archive": ("app.tar.gz", archive, "application/gzip")
    }
    if team_id is not None:  # plain form fields ride in the same multipart body
        files["team_id"] = (None, str(int(team_id)))
    if public is not None:
        files["public"] = (None, "true" if public else "false")
    data = yield from request(
        "POST", "/modules", files=files, idempotent=True, min_timeout=PUBLISH_TIMEOUT_S
    )
    return PublishResult.model_validate(data)


def download_archive(sha256: str) -> Op[bytes]:
    content: bytes = yield Fetch(
        RequestSpec("GET", f"/releases/{sha256}/archive", timeout=ARCHIVE_TIMEOUT_S)
    )
    return content
