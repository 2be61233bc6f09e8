"""Baseline: the store as memnas wrote it before Alembic (schema version 1).

Revision ID: 0001_baseline
Revises: (none)

Creates each table of schema version 1 that is missing, so it also brings a store
written before Alembic (a ``memnas_version`` row of version 1, no revision) to the
baseline: the first such stores lack the ``artifacts`` table. The tables are written
out here, frozen, not taken from the models, which move on with later revisions.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context, op

revision = "0001_baseline"
down_revision = None
branch_labels = None
depends_on = None

SCHEMA_VERSION = 1


def _id() -> sa.Column:
    return sa.Column("id", sa.Integer(), nullable=False)


def _trial_id() -> sa.Column:
    return sa.Column("trial_id", sa.Integer(), nullable=False)


def _create_memnas_version() -> None:
    from memnas import __version__

    table = op.create_table(
        "memnas_version", _id(),
        sa.Column("schema_version", sa.Integer(), nullable=False),
        sa.Column("memnas_version", sa.String(32), nullable=False),
        sa.PrimaryKeyConstraint("id"))
    op.bulk_insert(table, [{"id": 1, "schema_version": SCHEMA_VERSION,
                            "memnas_version": __version__}])


def _create_experiments() -> None:
    op.create_table(
        "experiments", _id(),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("space", sa.JSON(), nullable=False),
        sa.Column("space_hash", sa.String(64), nullable=False),
        sa.Column("algorithm", sa.JSON(), nullable=False),
        sa.Column("evaluator", sa.JSON(), nullable=False),
        sa.Column("objectives", sa.JSON(), nullable=False),
        sa.Column("config", sa.JSON(), nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("driver", sa.String(200), nullable=True),
        sa.Column("heartbeat_at", sa.DateTime(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"))
    op.create_index("ix_experiments_fingerprint", "experiments", ["fingerprint"])


def _create_trials() -> None:
    op.create_table(
        "trials", _id(),
        sa.Column("experiment_id", sa.Integer(), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("dna", sa.JSON(), nullable=False),
        sa.Column("decisions", sa.JSON(), nullable=False),
        sa.Column("candidate", sa.Text(), nullable=False),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("sym_hash", sa.String(64), nullable=False),
        sa.Column("fn_hash", sa.String(64), nullable=True),
        sa.Column("cached_from", sa.Integer(), nullable=True),
        sa.Column("cache_kind", sa.String(16), nullable=True),
        sa.Column("saved_time", sa.Float(), nullable=True),
        sa.Column("seed", sa.Integer(), nullable=False),
        sa.Column("metrics", sa.JSON(), nullable=False),
        sa.Column("costs", sa.JSON(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("node", sa.String(200), nullable=True),
        sa.Column("wall_time", sa.Float(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("started_at", sa.DateTime(), nullable=True),
        sa.Column("heartbeat_at", sa.DateTime(), nullable=True),
        sa.Column("finished_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("experiment_id", "number", name="uq_trial_number"),
        sa.ForeignKeyConstraint(["experiment_id"], ["experiments.id"], ondelete="CASCADE"))
    op.create_index("ix_trials_experiment_status", "trials", ["experiment_id", "status"])
    op.create_index("ix_trials_fn_hash", "trials", ["fn_hash"])
    op.create_index("ix_trials_sym_hash", "trials", ["sym_hash"])


def _create_curve_points() -> None:
    op.create_table(
        "curve_points", _id(), _trial_id(),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("trial_id", "step", "name", name="uq_curve_point"),
        sa.ForeignKeyConstraint(["trial_id"], ["trials.id"], ondelete="CASCADE"))
    op.create_index("ix_curve_points_trial_id", "curve_points", ["trial_id"])


def _create_artifacts() -> None:
    op.create_table(
        "artifacts", _id(), _trial_id(),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("keys", sa.JSON(), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("trial_id", "kind", name="uq_artifact_trial_kind"),
        sa.ForeignKeyConstraint(["trial_id"], ["trials.id"], ondelete="CASCADE"))
    op.create_index("ix_artifacts_trial_id", "artifacts", ["trial_id"])


_TABLES = {"memnas_version": _create_memnas_version, "experiments": _create_experiments,
           "trials": _create_trials, "curve_points": _create_curve_points,
           "artifacts": _create_artifacts}  # in the order foreign keys need


def upgrade() -> None:
    """Creates the schema version 1 tables the store lacks (all of them in an empty one)."""
    present = set() if context.is_offline_mode() else \
        set(sa.inspect(op.get_bind()).get_table_names())
    for name, create in _TABLES.items():
        if name not in present:
            create()


def downgrade() -> None:
    """Drops every table (the store's data with them)."""
    for name in reversed(list(_TABLES)):
        op.drop_table(name)
