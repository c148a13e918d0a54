"""Alembic environment: uses the engine the server hands in, or sqlalchemy.url."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from appyard.server.db.models import Base

config = context.config
engine = config.attributes.get("engine")
if engine is None:
    engine = create_engine(config.get_main_option("sqlalchemy.url") or "sqlite://")

with engine.connect() as connection:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()
    connection.commit()
