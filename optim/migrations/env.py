"""Alembic environment of the run store: migrates the connection :func:`optim.migrations.upgrade`
hands in (inside its write transaction), recording the revision in ``optim_alembic_version``."""

from alembic import context

from optim.migrations import VERSION_TABLE

context.configure(
    connection=context.config.attributes["connection"],
    version_table=VERSION_TABLE,
    render_as_batch=True,  # SQLite alters tables by copy-and-move
)
with context.begin_transaction():
    context.run_migrations()
