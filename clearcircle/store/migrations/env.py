"""Alembic environment: runs migrations on the connection handed over by clearcircle.store.db.upgrade."""

from alembic import context

from clearcircle.store.tables import metadata

connection = context.config.attributes.get("connection")
if connection is None:  # invoked by the alembic CLI: build an engine from the URL
    from clearcircle.store.db import make_engine

    engine = make_engine(context.config.get_main_option("sqlalchemy.url"))
    with engine.begin() as conn:
        context.configure(connection=conn, target_metadata=metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
else:
    context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()
