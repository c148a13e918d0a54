"""Run the Alembic migrations programmatically (the server does it on start)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(engine: Engine | None = None, url: str | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    if url:
        cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    if engine is not None:
        cfg.attributes["engine"] = engine
    return cfg


def upgrade(engine: Engine, files_dir: Path | None = None) -> None:
    """Bring the database to the newest schema; safe to call on every start.

    ``files_dir`` (the team files' folder) lets a migration index the files already there
    (0010 gives each an id)."""
    cfg = alembic_config(engine)
    if files_dir is not None:
        cfg.attributes["files_dir"] = files_dir
    command.upgrade(cfg, "head")
