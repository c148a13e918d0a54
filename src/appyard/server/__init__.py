"""The appyard server: the only process that touches the database.

routes/ (thin HTTP) → services/ (rules) → db/ (SQLAlchemy models, Alembic migrations).
"""
