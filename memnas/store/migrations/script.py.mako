"""${message}

Revision ID: ${up_revision}
Revises: ${down_revision | comma,n}
Create Date: ${create_date}
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
${imports if imports else ""}
revision = ${repr(up_revision)}
down_revision = ${repr(down_revision)}
branch_labels = ${repr(branch_labels)}
depends_on = ${repr(depends_on)}

SCHEMA_VERSION = int(revision[:4])  # revision ids start with their schema version


def _set_schema_version(version: int) -> None:
    op.execute(sa.text("UPDATE memnas_version SET schema_version = :v").bindparams(v=version))


def upgrade() -> None:
    """Brings a store of the previous schema version to this one."""
    ${upgrades if upgrades else "# the change, e.g. op.create_index(...)"}
    _set_schema_version(SCHEMA_VERSION)


def downgrade() -> None:
    """Takes a store of this schema version back to the previous one."""
    ${downgrades if downgrades else "# its undoing, e.g. op.drop_index(...)"}
    _set_schema_version(SCHEMA_VERSION - 1)
