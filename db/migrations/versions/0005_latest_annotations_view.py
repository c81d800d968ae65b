"""the latest_annotations view: each file's latest annotation per model version

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25
"""

from alembic import op

from db.models import LATEST_ANNOTATIONS_VIEW

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(LATEST_ANNOTATIONS_VIEW)


def downgrade() -> None:
    op.execute("DROP VIEW latest_annotations")
