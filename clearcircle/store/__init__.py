"""Persistence: SQLAlchemy 2 Core tables, Alembic migrations, and the one repository the pipeline writes through."""
