"""The feedback table (schema version 3): the order in which trials were fed back.

With the trials' numbers (the order they were proposed in) it gives the order of every
call a search made to its algorithm, so a resumed search replays them exactly.

Revision ID: 0003_feedback_order
Revises: 0002_trials_finished_at
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_feedback_order"
down_revision = "0002_trials_finished_at"
branch_labels = None
depends_on = None

SCHEMA_VERSION = 3


def _set_schema_version(version: int) -> None:
    op.execute(sa.text("UPDATE memnas_version SET schema_version = :v").bindparams(v=version))


def upgrade() -> None:
    """Adds the feedback table."""
    op.create_table(
        "feedback",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("experiment_id", sa.Integer(), nullable=False),
        sa.Column("trial_id", sa.Integer(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["experiment_id"], ["experiments.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["trial_id"], ["trials.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("experiment_id", "seq", name="uq_feedback_seq"),
    )
    op.create_index("ix_feedback_trial_id", "feedback", ["trial_id"])
    _set_schema_version(SCHEMA_VERSION)


def downgrade() -> None:
    """Drops the feedback table."""
    op.drop_index("ix_feedback_trial_id", table_name="feedback")
    op.drop_table("feedback")
    _set_schema_version(SCHEMA_VERSION - 1)
