"""folders that could not be listed, unchanged files that failed before: jobs.unlisted_folders, jobs.images_unchanged_failed

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""

from alembic import op
import sqlalchemy as sa

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('unlisted_folders', sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column('images_unchanged_failed', sa.Integer(), nullable=False, server_default='0'))


def downgrade() -> None:
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.drop_column('images_unchanged_failed')
        batch_op.drop_column('unlisted_folders')
