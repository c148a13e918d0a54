"""Ids of team files: one ``team_files`` row per regular file, so that a file has a stable id.

The disk (``file_tree``) stays the truth of what exists; the rows are an index over it that
mends itself:

- an upload makes the row of its path, or updates it (the id stays: a file replaced at the same
  path is the same file), with the sha256 of what it wrote;
- a removal deletes the rows of the file, or of everything below a folder;
- a listing or an info call that meets a file with no row (put there before ids existed, or
  whose upload's row was lost) makes its row then;
- ``GET /files/{id}`` answers from the disk: a row whose file is gone is a 404 (and goes);
- a move (``PATCH /files/{id}``) gives the row its new path, the id staying; a folder's move
  gives the rows below it theirs.

``hash`` is said only while the file on disk still has the size and modification time the
upload left, so a hash never describes other content.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from appyard.errors import ConflictError, NotFoundError
from appyard.schemas.accounts import Role
from appyard.schemas.files import FileInfo
from appyard.server.db.models import TeamFile, utcnow
from appyard.server.security import Principal
from appyard.server.services.access import allow

#: paths per ``IN (...)`` when reading the rows of a listing
_CHUNK = 500
#: how often an upload's row is written again when racing removals take it away meanwhile
_RACE_ATTEMPTS = 5


def indexable(entry: FileInfo) -> bool:
    """A regular file whose path the database can store (a name put on the disk by hand may
    not be UTF-8): only those have ids."""
    if entry.is_dir:
        return False
    try:
        entry.path.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def path_key(path: str) -> str:
    """The sha256 of a normalized team path: the unique key of its row in its team."""
    return hashlib.sha256(path.encode("utf-8")).hexdigest()


def file_missing(file_id: int) -> NotFoundError:
    """The one 404 of a file id that is unknown, gone, or of a team the caller is not in."""
    return NotFoundError(
        f"File {file_id} not found, or it is not in one of your teams' files. List the team's "
        "files (GET /teams/{team_id}/files) for the ids of what is there now.",
        field="file_id",
    )


def _same_content(row: TeamFile, entry: FileInfo) -> bool:
    """The file on disk is still what the row's hash was taken of (size and mtime agree; the
    listing's time has microseconds)."""
    if row.sha256 is None or row.mtime_ns is None or row.size != entry.size:
        return False
    listed_us = round(entry.modified_at.timestamp() * 1_000_000)
    return abs(listed_us - row.mtime_ns // 1000) <= 2


def with_row(entry: FileInfo, row: TeamFile) -> FileInfo:
    """``entry`` (from the disk) with what its row knows: id, team, hash, uploader, times."""
    return entry.model_copy(
        update={
            "id": row.id,
            "team_id": row.team_id,
            "hash": row.sha256 if _same_content(row, entry) else None,
            "user_id": row.user_id,
            "created_at": row.created_at,
            "updated_at": row.updated_at,
        }
    )


def rows_of(s: Session, team_id: int, paths: Sequence[str]) -> dict[str, TeamFile]:
    """The rows of the team's files at ``paths``, by path."""
    found: dict[str, TeamFile] = {}
    for i in range(0, len(paths), _CHUNK):
        keys = [path_key(p) for p in paths[i : i + _CHUNK]]
        rows = s.scalars(
            select(TeamFile).where(TeamFile.team_id == team_id, TeamFile.path_key.in_(keys))
        )
        found.update((r.path, r) for r in rows)
    return found


def _insert_or_get(s: Session, row: TeamFile) -> TeamFile:
    """Insert ``row``; if a racing request made the row of that path first, that row. (If a
    removal takes that one away too before it is read, the insert is tried again.)"""
    for _ in range(_RACE_ATTEMPTS):
        try:
            with s.begin_nested():
                s.add(row)
                s.flush()
            return row
        except IntegrityError:
            other = s.scalar(
                select(TeamFile).where(
                    TeamFile.team_id == row.team_id, TeamFile.path_key == row.path_key
                )
            )
            if other is not None:
                return other
            fields = {c.key: getattr(row, c.key) for c in TeamFile.__table__.columns}
            row = TeamFile(**{k: v for k, v in fields.items() if k != "id"})
    raise ConflictError(
        f"{row.path!r} kept being uploaded and removed at once; nothing of its id was kept. "
        "Try again once it is no longer being removed.",
        field="path",
    )


def ensure_rows(s: Session, team_id: int, entries: Iterable[FileInfo]) -> dict[str, TeamFile]:
    """The rows of the listed files, made for those that have none (a file put there before
    ids existed, or whose upload's row was lost)."""
    files = [e for e in entries if indexable(e)]
    found = rows_of(s, team_id, [e.path for e in files])
    for e in files:
        if e.path not in found:
            found[e.path] = _insert_or_get(
                s,
                TeamFile(
                    team_id=team_id,
                    path=e.path,
                    path_key=path_key(e.path),
                    size=e.size,
                    created_at=e.modified_at,
                    updated_at=e.modified_at,
                ),
            )
    return found


def record_upload(
    s: Session,
    *,
    team_id: int,
    info: FileInfo,
    sha256: str,
    mtime_ns: int,
    user_id: int | None,
) -> FileInfo:
    """The row of an uploaded file: made, or brought up to date (its id stays).

    Written with plain statements, looked at again after: a removal racing with the upload may
    delete the row in between (then it is made anew), and a racing upload of the same path may
    make it first (then it is updated).
    """
    key = path_key(info.path)
    now = utcnow()
    values = {
        "size": info.size,
        "mtime_ns": mtime_ns,
        "sha256": sha256,
        "user_id": user_id,
        "updated_at": now,
    }
    this = (TeamFile.team_id == team_id, TeamFile.path_key == key)
    for _ in range(_RACE_ATTEMPTS):
        row_id = s.scalar(select(TeamFile.id).where(*this))
        if row_id is None:
            made = TeamFile(team_id=team_id, path=info.path, path_key=key, created_at=now, **values)
            got = _insert_or_get(s, made)
            if got is made:
                return with_row(info, got)
            row_id = got.id
        changed = s.execute(
            update(TeamFile)
            .where(TeamFile.id == row_id)
            .values(**values)
            .execution_options(synchronize_session=False)
        )
        if changed.rowcount:  # type: ignore[attr-defined]
            found = s.get(TeamFile, row_id, populate_existing=True)
            if found is not None:
                return with_row(info, found)
    # removals kept taking the row away: the file is answered without its row, which the
    # next listing makes again if the file is still there
    return info


def forget(s: Session, *, team_id: int, path: str) -> None:
    """Delete the rows of a removed file, or of everything below a removed folder."""
    below = path.rstrip("/") + "/"
    # a prefix compared as it is (LIKE would ignore case on SQLite, and take in ``/Data`` with
    # ``/data``)
    s.execute(
        delete(TeamFile).where(
            TeamFile.team_id == team_id,
            or_(
                TeamFile.path_key == path_key(path),
                func.substr(TeamFile.path, 1, len(below)) == below,
            ),
        )
    )


def find(s: Session, p: Principal, file_id: int, need: Role = "viewer") -> TeamFile:
    """The row of file ``file_id`` if the caller's role in its team is at least ``need``
    (a lower one: 403); not a member, or no such row: the 404."""
    row = s.get(TeamFile, file_id)
    if row is None:
        raise file_missing(file_id)
    allow(s, p, row.team_id, need, file_missing(file_id))
    return row


def columns(row: TeamFile) -> dict[str, Any]:
    """A row's values, to be used after its transaction ended."""
    return {c.key: getattr(row, c.key) for c in TeamFile.__table__.columns}


def move(s: Session, *, file_id: int, team_id: int, path: str, was: dict[str, Any]) -> TeamFile:
    """The row of a file just moved on disk to ``path``: the same id, the new path.

    A row left at ``path`` (of a file once there and removed by other means, or made by a
    listing that met the moved file first) goes. If the file's own row went meanwhile (a
    look at its old path found it gone), it is made again with its id, from ``was`` (its
    values before the move, ``columns``).
    """
    key = path_key(path)
    s.execute(
        delete(TeamFile).where(
            TeamFile.team_id == team_id, TeamFile.path_key == key, TeamFile.id != file_id
        )
    )
    moved = s.execute(
        update(TeamFile)
        .where(TeamFile.id == file_id, TeamFile.team_id == team_id)
        .values(path=path, path_key=key, updated_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    if not moved.rowcount:  # type: ignore[attr-defined]
        s.add(TeamFile(**{**was, "path": path, "path_key": key, "updated_at": utcnow()}))
        s.flush()
    row = s.get(TeamFile, file_id, populate_existing=True)
    assert row is not None  # updated or made above, in this transaction
    return row


def move_below(s: Session, *, team_id: int, src: str, dst: str) -> None:
    """The rows of the files below folder ``src``, just moved on disk to ``dst``: the same
    ids, the new paths (rows left at those paths by files removed by other means go)."""
    # ``dst`` was free on the disk: a row at it or below it is of a file gone by other means
    forget(s, team_id=team_id, path=dst)
    below = src + "/"
    rows = s.execute(
        select(TeamFile.id, TeamFile.path).where(
            TeamFile.team_id == team_id,
            func.substr(TeamFile.path, 1, len(below)) == below,  # (as ``forget``: no LIKE)
        )
    ).all()
    if not rows:
        return
    moved = {file_id: dst + path[len(src) :] for file_id, path in rows}
    now = utcnow()
    s.execute(
        update(TeamFile),
        [
            {"id": file_id, "path": path, "path_key": path_key(path), "updated_at": now}
            for file_id, path in moved.items()
        ],
    )


def drop_stale(s: Session, *, file_id: int, still_gone: Callable[[], bool]) -> None:
    """Delete the row of a file found gone from the disk, if it still is (looked at again
    inside this transaction: an upload may have put a file there meanwhile)."""
    if still_gone():
        s.execute(delete(TeamFile).where(TeamFile.id == file_id))
