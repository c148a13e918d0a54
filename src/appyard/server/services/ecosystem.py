"""The catalog: publishing releases of modules and reading them back."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from typing import Any

from sqlalchemy import exists, or_, select
from sqlalchemy.orm import Session

from appyard.errors import BadRequestError, ConflictError, NotFoundError, PermissionDeniedError
from appyard.schemas.common import MAX_JSON_DEPTH, json_depth
from appyard.schemas.ecosystem import ModuleInfoWire, PublishResult, ReleaseInfo
from appyard.schemas.manifest import Manifest
from appyard.server.db.models import Member, Module, Release, utcnow
from appyard.server.security import Principal
from appyard.server.services.accounts import require_user
from appyard.server.services.manifest import parse_manifest
from appyard.server.storage import ReleaseStore

MAX_CONFIG_BYTES = 1024 * 1024
_TOO_DEEP = object()


def _norm(name: str) -> str:
    while name.startswith("./"):
        name = name[2:]
    return name


def read_archive(data: bytes) -> tuple[dict[str, Any], Manifest, str]:
    """Open an uploaded app archive; return its ``config.json`` (as written: that is what is
    stored and sent), the manifest parsed from it, and the readme.

    The archive must be a gzipped tar with ``config.json`` at its root; members must stay
    inside the folder (no absolute paths, no ``..``, no links, no devices).
    """
    try:
        tar = tarfile.open(fileobj=io.BytesIO(data), mode="r:gz")  # noqa: SIM115 - read below
        members = tar.getmembers()
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise BadRequestError(
            f"archive is not a gzipped tar ({exc}); publish a folder with `appyard app publish PATH`",
            field="archive",
        ) from None
    files: dict[str, tarfile.TarInfo] = {}
    for m in members:
        name = _norm(m.name)
        if name.startswith("/") or ".." in name.split("/"):
            raise BadRequestError(
                f"archive member {m.name!r} escapes the app folder", field="archive"
            )
        if not (m.isfile() or m.isdir()):
            raise BadRequestError(
                f"archive member {m.name!r} is a link or device; only files and folders are allowed",
                field="archive",
            )
        files[name] = m
    if "config.json" not in files:
        raise BadRequestError(
            "archive has no config.json at its root: every app folder needs a config.json manifest",
            field="config.json",
        )
    cfg_member = files["config.json"]
    if not cfg_member.isfile():
        raise BadRequestError("config.json must be a file, not a folder", field="config.json")
    if cfg_member.size > MAX_CONFIG_BYTES:
        raise BadRequestError("config.json is larger than 1 MiB", field="config.json")
    raw = tar.extractfile(cfg_member)
    assert raw is not None
    try:
        config = json.loads(raw.read().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadRequestError(
            f"config.json is not valid JSON: {exc}", field="config.json"
        ) from None
    except RecursionError:
        config = _TOO_DEEP
    if config is _TOO_DEEP or json_depth(config) > MAX_JSON_DEPTH:
        raise BadRequestError(
            f"config.json is nested deeper than {MAX_JSON_DEPTH} levels", field="config.json"
        )
    manifest = parse_manifest(config)
    for key, path in (
        ("main_script", manifest.main_script),
        ("requirements", manifest.requirements),
    ):
        if not isinstance(path, str) or not path.strip():
            continue
        member = files.get(_norm(path))
        if member is None or not member.isfile():
            raise BadRequestError(
                f"config.json: {key} {path!r} is not in the app folder", field=f"config.{key}"
            )
    readme = ""
    for name in ("README.md", "readme.md", "README"):
        if name in files and files[name].isfile():
            fh = tar.extractfile(files[name])
            if fh is not None:
                readme = fh.read(256 * 1024).decode("utf-8", "replace")
            break
    return config, manifest, readme


def _release_info(r: Release) -> ReleaseInfo:
    return ReleaseInfo(
        id=r.id, version=r.version, sha256=r.sha256, size=r.size, created_at=r.created_at
    )


def _can_publish(s: Session, p: Principal) -> int:
    user_id = require_user(p)
    if p.kind != "user":
        raise PermissionDeniedError("Publishing needs a user token, not a task token.")
    if p.is_admin:
        return user_id
    developer = s.scalar(
        select(exists().where(Member.user_id == user_id, Member.role.in_(("developer", "admin"))))
    )
    if not developer:
        raise PermissionDeniedError(
            "Publishing needs the developer or admin role in at least one team."
        )
    return user_id


def publish(s: Session, p: Principal, *, data: bytes, store: ReleaseStore) -> PublishResult:
    """Add a release; the same content published again returns the release it already has."""
    user_id = _can_publish(s, p)
    config, manifest, readme = read_archive(data)
    sha = hashlib.sha256(data).hexdigest()
    slug = manifest.slug
    module = s.scalar(select(Module).where(Module.slug == slug))
    if module is None:
        module = Module(slug=slug, name=manifest.name, publisher_id=user_id)
        s.add(module)
        s.flush()
    elif module.publisher_id not in (None, user_id) and not p.is_admin:
        raise PermissionDeniedError(
            f"Module {slug} belongs to another publisher; only they or an admin can publish it.",
            field="config.slug",
        )
    same = s.scalar(select(Release).where(Release.module_id == module.id, Release.sha256 == sha))
    if same is not None:
        return PublishResult(
            module_id=module.id, slug=slug, release=_release_info(same), created=False
        )
    count = len(s.scalars(select(Release.id).where(Release.module_id == module.id)).all())
    version = manifest.version or f"r{count + 1}"
    clash = s.scalar(
        select(Release).where(Release.module_id == module.id, Release.version == version)
    )
    if clash is not None:
        raise ConflictError(
            f"{slug} has a release {version!r} with other content already; "
            "bump `version` in config.json (or remove it to number releases automatically).",
            field="config.version",
        )
    store.put(sha, data)
    release = Release(
        module_id=module.id,
        version=version,
        sha256=sha,
        size=len(data),
        config=config,
        readme=readme,
    )
    s.add(release)
    module.name = manifest.name
    module.updated_at = utcnow()
    s.flush()
    return PublishResult(
        module_id=module.id, slug=slug, release=_release_info(release), created=True
    )


def releases_of(s: Session, module_id: int) -> list[Release]:
    return list(
        s.scalars(select(Release).where(Release.module_id == module_id).order_by(Release.id.desc()))
    )


def pick_release(s: Session, module_id: int, version: str | None) -> Release:
    """The release asked for, or the newest one; a clear 404 naming the versions there are.

    One row is read (every start asks): the list of versions only for the 404.
    """
    newest = select(Release).where(Release.module_id == module_id).order_by(Release.id.desc())
    if version is not None:
        newest = newest.where(Release.version == version)
    found = s.scalars(newest.limit(1)).first()
    if found is not None:
        return found
    releases = releases_of(s, module_id)
    if not releases:
        raise NotFoundError(
            f"Module {module_id} has no release yet; publish one.", field="module_id"
        )
    raise NotFoundError(
        f"Module {module_id} has no release {version!r}; it has {[r.version for r in releases]}.",
        field="version",
    )


def get_module_row(s: Session, module_id: int) -> Module:
    module = s.get(Module, module_id)
    if module is None:
        raise NotFoundError(f"Module {module_id} not found in the ecosystem.", field="module_id")
    return module


def module_info(s: Session, p: Principal, *, module_id: int, version: str | None) -> ModuleInfoWire:
    module = get_module_row(s, module_id)
    releases = releases_of(s, module_id)
    release = pick_release(s, module_id, version)
    config = release.config
    return ModuleInfoWire(
        id=module.id,
        slug=module.slug,
        name=module.name,
        type="app",
        config=config,
        readme=release.readme,
        repo=config.get("repo") if isinstance(config.get("repo"), str) else None,
        github_repo=None,
        meta={
            "releases": [_release_info(r).model_dump(mode="json") for r in releases],
            "version": release.version,
        },
        created_at=module.created_at,
        updated_at=module.updated_at,
    )


def lookup(s: Session, p: Principal, *, slug: str) -> int:
    module_id = s.scalar(select(Module.id).where(Module.slug == slug))
    if module_id is None:
        raise NotFoundError(f"Module {slug} not found in ecosystem", field="slug")
    return module_id


def list_modules(s: Session, p: Principal, *, q: str | None = None) -> list[ModuleInfoWire]:
    stmt = select(Module.id).order_by(Module.id)
    if q:
        like = f"%{q}%"
        stmt = stmt.where(or_(Module.slug.ilike(like), Module.name.ilike(like)))
    return [module_info(s, p, module_id=mid, version=None) for mid in s.scalars(stmt)]


def release_for_download(s: Session, p: Principal, *, sha256: str) -> Release:
    release = s.scalar(select(Release).where(Release.sha256 == sha256))
    if release is None:
        raise NotFoundError(f"No release with sha256 {sha256}.", field="sha256")
    return release
