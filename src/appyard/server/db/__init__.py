"""Database layer: models, engine, migrations."""
