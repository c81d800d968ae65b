"""database identity: one row naming this database, checked by workers against each task

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25
"""

import datetime as dt
import uuid

from alembic import op
import sqlalchemy as sa

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    table = op.create_table('database_identity',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.bulk_insert(table, [{"id": str(uuid.uuid4()), "created_at": dt.datetime.now(dt.timezone.utc)}])


def downgrade() -> None:
    op.drop_table('database_identity')
