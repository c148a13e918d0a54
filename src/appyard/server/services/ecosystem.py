"""The catalog: publishing releases of modules and reading them back."""

from __future__ import annotations

import hashlib
import json
import tarfile
import zlib
from dataclasses import dataclass
from typing import Any, BinaryIO

from sqlalchemy import ColumnElement, exists, func, or_, select, true
from sqlalchemy.orm import Session

from appyard import archive
from appyard.archive import DEFAULT_CAPS, Caps
from appyard.errors import BadRequestError, ConflictError, NotFoundError, PermissionDeniedError
from appyard.schemas.common import MAX_JSON_DEPTH, json_depth
from appyard.schemas.ecosystem import ModuleInfoWire, PublishResult, ReleaseInfo
from appyard.schemas.manifest import Manifest
from appyard.server.db.models import Member, Module, Release, SlugOwner, Team, utcnow
from appyard.server.security import Principal
from appyard.server.services.accounts import require_user
from appyard.server.services.manifest import parse_manifest

MAX_CONFIG_BYTES = 1024 * 1024
MAX_README_BYTES = 256 * 1024
_README_NAMES = ("README.md", "readme.md", "README")
_TOO_DEEP = object()


def _norm(name: str) -> str:
    while name.startswith("./"):
        name = name[2:]
    return name


@dataclass(frozen=True)
class CheckedArchive:
    """An uploaded archive, read whole under the caps and hashed: what a publish writes."""

    sha256: str
    size: int
    config: dict[str, Any]
    manifest: Manifest
    readme: str


def check_archive(fileobj: BinaryIO, caps: Caps = DEFAULT_CAPS) -> CheckedArchive:
    """Hash and read an uploaded archive; run it outside any transaction.

    A bomb, a broken or an unsafe archive is refused (422 on ``archive``) after at most the
    caps' worth of work; nothing here holds a database lock while it decompresses.
    """
    fileobj.seek(0)
    digest = hashlib.sha256()
    size = 0
    while chunk := fileobj.read(1 << 20):
        digest.update(chunk)
        size += len(chunk)
    fileobj.seek(0)
    config, manifest, readme = read_archive(fileobj, caps)
    return CheckedArchive(digest.hexdigest(), size, config, manifest, readme)


def read_archive(
    fileobj: BinaryIO, caps: Caps = DEFAULT_CAPS
) -> tuple[dict[str, Any], Manifest, str]:
    """Open an uploaded app archive; return its ``config.json`` (as written: that is what is
    stored and sent), the manifest parsed from it, and the readme.

    The archive must be a gzipped tar with ``config.json`` at its root; members must stay
    inside the folder (no absolute paths, no ``..``, no links, no devices), and within the
    caps of ``appyard.archive`` (unpacked bytes, entries, compression ratio).
    """
    files: dict[str, bool] = {}  # name -> is a file
    config_raw: bytes | None = None
    config_size = 0
    readmes: dict[str, bytes] = {}
    try:
        for tar, m in archive.members(fileobj, caps):
            name = _norm(m.name)
            if not (m.isfile() or m.isdir()):
                raise BadRequestError(
                    f"archive member {m.name!r} is a link or device; only files and folders "
                    "are allowed",
                    field="archive",
                )
            files[name] = m.isfile()
            if not m.isfile():
                continue
            if name == "config.json":
                config_size = m.size
                fh = tar.extractfile(m) if m.size <= MAX_CONFIG_BYTES else None
                config_raw = fh.read() if fh is not None else None
            elif name in _README_NAMES:
                fh = tar.extractfile(m)
                if fh is not None:
                    readmes[name] = fh.read(MAX_README_BYTES)
    except archive.ArchiveRefused as exc:
        raise BadRequestError(str(exc), field="archive") from None
    except (tarfile.TarError, EOFError, OSError, zlib.error) as exc:
        raise BadRequestError(
            f"archive is not a gzipped tar ({exc}); publish a folder with `appyard app publish PATH`",
            field="archive",
        ) from None
    if "config.json" not in files:
        raise BadRequestError(
            "archive has no config.json at its root: every app folder needs a config.json manifest",
            field="config.json",
        )
    if not files["config.json"]:
        raise BadRequestError("config.json must be a file, not a folder", field="config.json")
    if config_size > MAX_CONFIG_BYTES or config_raw is None:
        raise BadRequestError("config.json is larger than 1 MiB", field="config.json")
    try:
        config = json.loads(config_raw.decode("utf-8"))
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
        if not files.get(_norm(path)):
            raise BadRequestError(
                f"config.json: {key} {path!r} is not in the app folder", field=f"config.{key}"
            )
    readme = ""
    for name in _README_NAMES:
        if name in readmes and files.get(name):
            readme = readmes[name].decode("utf-8", "replace")
            break
    return config, manifest, readme


def _release_info(r: Release) -> ReleaseInfo:
    return ReleaseInfo(
        id=r.id, version=r.version, sha256=r.sha256, size=r.size, created_at=r.created_at
    )


#: owner prefixes no team may claim: the bundled apps' (published by ``appyard up``)
RESERVED_OWNERS = frozenset({"appyard"})
#: an owner prefix (the part of a slug before ``/``), in characters
MAX_OWNER = 64
#: a slug in characters (the column's size; the manifest holds it to the same)
MAX_SLUG = 200


def slug_owner(slug: str) -> str:
    """The owner prefix of ``owner/name``, lower case: ``Appyard/x`` is ``appyard``'s too."""
    return slug.split("/", 1)[0].lower()


def _member_teams(s: Session, user_id: int, roles: tuple[str, ...]) -> list[int]:
    return list(
        s.scalars(
            select(Member.team_id)
            .where(Member.user_id == user_id, Member.role.in_(roles))
            .order_by(Member.team_id)
        )
    )


def can_publish(s: Session, p: Principal) -> int:
    """The publishing user; refused unless a user token with the developer or admin role in
    a team (or an instance admin). Cheap: checked before an upload is read."""
    user_id = require_user(p)
    if p.kind != "user":
        raise PermissionDeniedError("Publishing needs a user token, not a task token.")
    if p.is_admin:
        return user_id
    developer = s.scalar(
        select(exists().where(Member.user_id == user_id, Member.role.in_(_PUBLISHERS)))
    )
    if not developer:
        raise PermissionDeniedError(
            "Publishing needs the developer or admin role in at least one team."
        )
    return user_id


_PUBLISHERS = ("developer", "admin")


def _publishing_team(s: Session, p: Principal, user_id: int, team_id: int | None) -> int | None:
    """The team a new module is published for: ``team_id`` (the caller must be a developer
    there), else the caller's one team; None for an instance admin who named none."""
    if team_id is not None:
        if s.get(Team, team_id) is None:
            raise NotFoundError(
                f"Team {team_id} not found, or you are not a member of it.", field="team_id"
            )
        if not p.is_admin and team_id not in _member_teams(s, user_id, _PUBLISHERS):
            raise PermissionDeniedError(
                f"Publishing for team {team_id} needs the developer or admin role in it.",
                field="team_id",
            )
        return team_id
    if p.is_admin:
        return None
    teams = _member_teams(s, user_id, _PUBLISHERS)
    if len(teams) == 1:
        return teams[0]
    raise BadRequestError(
        f"You may publish for teams {teams}; say which one with team_id.", field="team_id"
    )


def _claim_owner(s: Session, owner: str, team_id: int | None, slug: str) -> None:
    """Claim ``owner`` for ``team_id`` (None: the instance), or check that it already has it.

    The claim is a row keyed by the prefix: of two teams racing for one, one inserts it and
    the other's insert fails (the route runs the transaction again, and it is refused).
    """
    if owner in RESERVED_OWNERS:
        claimed: int | None = None
        found = True
    else:
        row = s.get(SlugOwner, owner)
        found = row is not None
        claimed = row.team_id if row is not None else None
    if not found:
        s.add(SlugOwner(owner=owner, team_id=team_id))
        s.flush()
        return
    if claimed != team_id:
        whose = "the instance (its admins)" if claimed is None else f"team {claimed}"
        mine = "the instance" if team_id is None else f"team {team_id}"
        raise PermissionDeniedError(
            f"The slug prefix {owner + '/'!r} of {slug} belongs to {whose}, not to {mine}; "
            "publish under a prefix of your team's own.",
            field="config.slug",
        )


def _check_slug(slug: str) -> str:
    if len(slug) > MAX_SLUG:
        raise BadRequestError(
            f"config.json: slug must be at most {MAX_SLUG} characters", field="config.slug"
        )
    owner = slug_owner(slug)
    if len(owner) > MAX_OWNER:
        raise BadRequestError(
            f"config.json: slug's owner (before '/') must be at most {MAX_OWNER} characters",
            field="config.slug",
        )
    return owner


def publish(
    s: Session,
    p: Principal,
    *,
    checked: CheckedArchive,
    team_id: int | None = None,
    public: bool | None = None,
) -> PublishResult:
    """Add a release of an archive already checked and stored (``check_archive``): a few short
    statements. The same content published again returns the release it already has.

    Who: a new module is its team's (``team_id``, or the publisher's one team) and claims its
    slug's prefix for it; a new release of a module needs the developer role in its team.
    Only an instance admin publishes public modules, modules of no team (public), and under
    ``appyard/``.
    """
    user_id = can_publish(s, p)
    manifest, sha = checked.manifest, checked.sha256
    slug = manifest.slug
    owner = _check_slug(slug)
    if public is not None and not p.is_admin:
        raise PermissionDeniedError(
            "Only an instance admin may publish a module as public or make it private again.",
            field="public",
        )
    if owner in RESERVED_OWNERS and not p.is_admin:
        raise PermissionDeniedError(
            f"The slug prefix {owner + '/'!r} is reserved for the bundled apps; publish under "
            "a prefix of your team's own.",
            field="config.slug",
        )
    module = s.scalar(select(Module).where(Module.slug == slug))
    if module is None:
        team = None if owner in RESERVED_OWNERS else _publishing_team(s, p, user_id, team_id)
        visible = public if public is not None else team is None
        if team is None and not visible:
            raise BadRequestError(
                "A module of no team is the instance's and public; give team_id to publish a "
                "private one.",
                field="public",
            )
        _claim_owner(s, owner, team, slug)
        module = Module(
            slug=slug, name=manifest.name, publisher_id=user_id, team_id=team, public=visible
        )
        s.add(module)
        s.flush()
    else:
        if team_id is not None and team_id != module.team_id:
            raise ConflictError(
                f"Module {slug} belongs to "
                f"{'no team' if module.team_id is None else f'team {module.team_id}'}; "
                f"it cannot be published for team {team_id}.",
                field="team_id",
            )
        if not p.is_admin and module.team_id not in _member_teams(s, user_id, _PUBLISHERS):
            raise PermissionDeniedError(
                f"Module {slug} belongs to another team; only its developers or an instance "
                "admin can publish it.",
                field="config.slug",
            )
        if public is not None:
            if module.team_id is None and not public:
                raise BadRequestError(
                    f"Module {slug} is the instance's (no team): it stays public.",
                    field="public",
                )
            module.public = public
    same = s.scalar(select(Release).where(Release.module_id == module.id, Release.sha256 == sha))
    if same is not None:
        return PublishResult(
            module_id=module.id, slug=slug, release=_release_info(same), created=False
        )
    count = s.scalar(select(func.count(Release.id)).where(Release.module_id == module.id)) or 0
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
    release = Release(
        module_id=module.id,
        version=version,
        sha256=sha,
        size=checked.size,
        config=checked.config,
        readme=checked.readme,
    )
    s.add(release)
    module.name = manifest.name
    module.updated_at = utcnow()
    s.flush()
    return PublishResult(
        module_id=module.id, slug=slug, release=_release_info(release), created=True
    )


# -- who sees what --------------------------------------------------------------------------


def visible(p: Principal) -> ColumnElement[bool]:
    """Which modules ``p`` may see, as a condition on ``Module``: public ones, and its teams'.

    A user sees its teams' modules (an instance admin sees all); a task or agent token only
    its own team's.
    """
    if p.kind == "user" and p.is_admin:
        return true()
    if p.kind == "user":
        mine = select(Member.team_id).where(Member.user_id == p.user_id).scalar_subquery()
        return or_(Module.public.is_(True), Module.team_id.in_(mine))
    return or_(Module.public.is_(True), Module.team_id == p.team_id)


def runs_in_team(module_team_id: int | None, public: bool, team_id: int) -> bool:
    """Whether a module may be started in ``team_id``: its own team's, or a public one."""
    return public or module_team_id == team_id


def _not_found(module_id: int) -> NotFoundError:
    return NotFoundError(f"Module {module_id} not found in the ecosystem.", field="module_id")


def visible_module(s: Session, p: Principal, module_id: int) -> Module:
    """The module, if ``p`` may see it; else the same 404 as for a module that does not exist
    (a private module's id and slug do not leak)."""
    module = s.scalar(select(Module).where(Module.id == module_id, visible(p)))
    if module is None:
        raise _not_found(module_id)
    return module


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
    """The module whoever asks (a start checks ``runs_in_team`` itself)."""
    module = s.get(Module, module_id)
    if module is None:
        raise _not_found(module_id)
    return module


def module_info(s: Session, p: Principal, *, module_id: int, version: str | None) -> ModuleInfoWire:
    module = visible_module(s, p, module_id)
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
            "team_id": module.team_id,
            "public": module.public,
        },
        created_at=module.created_at,
        updated_at=module.updated_at,
    )


def lookup(s: Session, p: Principal, *, slug: str) -> int:
    module_id = s.scalar(select(Module.id).where(Module.slug == slug, visible(p)))
    if module_id is None:
        raise NotFoundError(f"Module {slug} not found in ecosystem", field="slug")
    return module_id


def list_modules(s: Session, p: Principal, *, q: str | None = None) -> list[ModuleInfoWire]:
    stmt = select(Module.id).where(visible(p)).order_by(Module.id)
    if q:
        like = f"%{q}%"
        stmt = stmt.where(or_(Module.slug.ilike(like), Module.name.ilike(like)))
    return [module_info(s, p, module_id=mid, version=None) for mid in s.scalars(stmt)]


def release_for_download(s: Session, p: Principal, *, sha256: str) -> Release:
    """A release by its archive's sha256, if ``p`` may see one module that has it: a user of
    another team, or an agent of another team, gets the 404 of an unknown archive."""
    release = s.scalar(
        select(Release)
        .join(Module, Module.id == Release.module_id)
        .where(Release.sha256 == sha256, visible(p))
        .limit(1)
    )
    if release is None:
        raise NotFoundError(f"No release with sha256 {sha256}.", field="sha256")
    return release
