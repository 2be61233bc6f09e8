"""An index on trials.finished_at (schema version 2): recent-trial and progress queries.

Revision ID: 0002_trials_finished_at
Revises: 0001_baseline
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_trials_finished_at"
down_revision = "0001_baseline"
branch_labels = None
depends_on = None

SCHEMA_VERSION = 2


def _set_schema_version(version: int) -> None:
    op.execute(sa.text("UPDATE memnas_version SET schema_version = :v").bindparams(v=version))


def upgrade() -> None:
    """Adds ix_trials_finished_at."""
    op.create_index("ix_trials_finished_at", "trials", ["finished_at"])
    _set_schema_version(SCHEMA_VERSION)


def downgrade() -> None:
    """Drops ix_trials_finished_at."""
    op.drop_index("ix_trials_finished_at", table_name="trials")
    _set_schema_version(SCHEMA_VERSION - 1)
