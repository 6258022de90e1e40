"""Result sizes are 64-bit: PostgreSQL's INTEGER stops at 2 GiB, below a large model's file.

(SQLite's INTEGER is 64-bit already: nothing to do there.)

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_context().dialect.name != "sqlite":
        op.alter_column("results", "size_bytes", type_=sa.BigInteger(), existing_nullable=True)


def downgrade() -> None:
    if op.get_context().dialect.name != "sqlite":
        op.alter_column("results", "size_bytes", type_=sa.Integer(), existing_nullable=True)
