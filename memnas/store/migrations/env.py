"""Alembic's environment for the store: migrates the connection memnas hands over, or a URL."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context

from memnas.store._models import Base
from memnas.store._schema import VERSION_TABLE


def _migrate(connection: sa.Connection) -> None:
    context.configure(connection=connection, target_metadata=Base.metadata,
                      version_table=VERSION_TABLE, render_as_batch=True,
                      compare_type=True)
    with context.begin_transaction():  # no-op inside the transaction memnas opened
        context.run_migrations()


def _url() -> str:
    """The alembic command line's store: ``-x url=...``, else alembic.ini's sqlalchemy.url."""
    return context.get_x_argument(as_dictionary=True).get(
        "url", context.config.get_main_option("sqlalchemy.url"))


_connection = context.config.attributes.get("connection")
if _connection is not None:  # memnas.store._schema.upgrade
    _migrate(_connection)
elif context.is_offline_mode():  # alembic ... --sql: print the SQL
    context.configure(url=_url(), target_metadata=Base.metadata, version_table=VERSION_TABLE,
                      render_as_batch=True, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    _engine = sa.create_engine(_url())
    with _engine.begin() as _conn:
        _migrate(_conn)
    _engine.dispose()
