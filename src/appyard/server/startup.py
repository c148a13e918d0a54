"""Checks made before the server listens: the database driver, the connection, the schema.

Each failure becomes one :class:`ServerStartError` that names the cause and what to do, so that
``appyard server`` and ``appyard up`` can say it in one line instead of a traceback.
"""

from __future__ import annotations

from pathlib import Path

from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import Engine, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError

from appyard.errors import ServerStartError
from appyard.server.db.engine import make_engine
from appyard.server.db.migrate import alembic_config, upgrade

#: the pip extra that brings each database's driver
_DRIVER_EXTRA = {"psycopg": "postgres", "psycopg2": "postgres"}
_URL_HELP = (
    "APPYARD_DATABASE_URL takes sqlite:///PATH or postgresql://USER[:PASSWORD]@HOST:PORT/DATABASE"
)


def shown_url(url: str) -> str:
    """The URL with its password hidden, as it may be printed."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "(an unreadable URL)"


def open_engine(url: str) -> Engine:
    """An engine for ``url``, or the reason there can be none (bad URL, missing driver)."""
    try:
        backend = make_url(url).get_backend_name()
    except ArgumentError as exc:
        raise ServerStartError(f"the database URL cannot be read ({exc}); {_URL_HELP}") from exc
    if backend not in ("sqlite", "postgresql"):
        raise ServerStartError(
            f"appyard runs on SQLite or PostgreSQL, not {backend!r}; {_URL_HELP}"
        )
    try:
        return make_engine(url)
    except ArgumentError as exc:
        raise ServerStartError(f"the database URL cannot be read ({exc}); {_URL_HELP}") from exc
    except NoSuchModuleError as exc:
        scheme = url.split(":", 1)[0]
        raise ServerStartError(
            f"the database URL names an unknown database or driver ({scheme!r}); {_URL_HELP}"
        ) from exc
    except ModuleNotFoundError as exc:
        driver = (exc.name or "").split(".")[0]
        extra = _DRIVER_EXTRA.get(driver)
        fix = (
            f"install it with: pip install 'appyard[{extra}]'"
            if extra
            else f"install the Python package {driver!r}"
        )
        raise ServerStartError(
            f"the database driver {driver!r} for {shown_url(url)} is not installed; {fix}"
        ) from exc


def check_connection(engine: Engine) -> None:
    """One round trip, so that an unreachable database is said before anything else."""
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
    except SQLAlchemyError as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        raise ServerStartError(
            f"cannot connect to the database {shown_url(str(engine.url))}: {reason}. Check that "
            "the database server runs and accepts this user, that the database exists, and "
            "APPYARD_DATABASE_URL"
        ) from exc


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def migrate(engine: Engine, files_dir: Path | None = None) -> None:
    """Bring the schema to this version's, or say why it cannot be."""
    known = {s.revision for s in ScriptDirectory.from_config(alembic_config()).walk_revisions()}
    try:
        at = current_revision(engine)
    except SQLAlchemyError as exc:
        raise ServerStartError(f"cannot read the database's schema version: {exc}") from exc
    if at is not None and at not in known:
        raise ServerStartError(
            f"the database {shown_url(str(engine.url))} has schema revision {at!r}, which this "
            "appyard does not know: it was made by a newer version. Install that version (or "
            "newer), or point APPYARD_DATABASE_URL at another database"
        )
    try:
        upgrade(engine, files_dir)
    except (SQLAlchemyError, CommandError) as exc:
        reason = str(exc).strip().splitlines()[0]
        raise ServerStartError(
            f"migrating the database {shown_url(str(engine.url))} from schema revision "
            f"{at or 'none'} failed: {reason}. The migrations run in one transaction, so the "
            f"database is left at revision {at or 'none'}; fix the cause (or restore a backup), "
            "then start again"
        ) from exc


def preflight(url: str, files_dir: Path | None = None) -> None:
    """Driver, connection and schema, checked once before the server listens."""
    engine = open_engine(url)
    try:
        check_connection(engine)
        migrate(engine, files_dir)
    finally:
        engine.dispose()
