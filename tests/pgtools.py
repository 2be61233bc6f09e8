"""The PostgreSQL test database: its URL (``MEMNAS_TEST_POSTGRES``) and emptying it."""

from __future__ import annotations

import os

POSTGRES_URL = os.environ.get("MEMNAS_TEST_POSTGRES")


def reset_postgres(url: str) -> None:
    """Drops every memnas table of the PostgreSQL test database."""
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE IF EXISTS feedback, artifacts, curve_points, trials, experiments, "
                             "memnas_version, memnas_alembic_version CASCADE"))
    engine.dispose()
