"""Per-trial budgets (schema version 4): multi-fidelity rungs and the trial they continue.

``budget`` is the trial's own budget over its experiment's (a rung's ``{"steps": 100}``),
``budget_key`` its sha256 for the equivalence cache (a result at one budget never
answers another), ``parent_id`` the trial whose checkpoint it resumed (a lower rung of
the same candidate).

Revision ID: 0004_trial_budgets
Revises: 0003_feedback_order
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_trial_budgets"
down_revision = "0003_feedback_order"
branch_labels = None
depends_on = None

SCHEMA_VERSION = 4


def _set_schema_version(version: int) -> None:
    op.execute(sa.text("UPDATE memnas_version SET schema_version = :v").bindparams(v=version))


def upgrade() -> None:
    """Adds trials.budget, trials.budget_key and trials.parent_id."""
    with op.batch_alter_table("trials") as batch:
        batch.add_column(sa.Column("budget", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("budget_key", sa.String(64), nullable=True))
        batch.add_column(sa.Column("parent_id", sa.Integer(), nullable=True))
    _set_schema_version(SCHEMA_VERSION)


def downgrade() -> None:
    """Drops the three columns."""
    with op.batch_alter_table("trials") as batch:
        batch.drop_column("parent_id")
        batch.drop_column("budget_key")
        batch.drop_column("budget")
    _set_schema_version(SCHEMA_VERSION - 1)
