"""path and content indexes: a file's or a content's latest annotation by one index seek; paths in byte order

Replaces ix_images_path (path) and ix_images_sha256 (sha256) with (path, model_id, status, id) and
(sha256, model_id, status, id): the newest done row of a path or a content for a model is the end
of one index range, on SQLite and PostgreSQL alike. On PostgreSQL images.path takes the "C"
collation, so the files under a folder are one range of that index whatever the database's locale
(the views depend on the column, so they are dropped and created again).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01
"""

from alembic import op

from db.models import FACE_ANNOTATIONS_VIEW, LATEST_ANNOTATIONS_VIEW

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def _postgresql() -> bool:
    return op.get_bind().dialect.name == "postgresql"


def upgrade() -> None:
    op.execute("DROP VIEW latest_annotations")
    op.execute("DROP VIEW face_annotations")
    if _postgresql():
        op.execute('ALTER TABLE images ALTER COLUMN path TYPE text COLLATE "C"')
    op.drop_index('ix_images_path', table_name='images')
    op.drop_index('ix_images_sha256', table_name='images')
    op.create_index('ix_images_path_model', 'images', ['path', 'model_id', 'status', 'id'])
    op.create_index('ix_images_sha256_model', 'images', ['sha256', 'model_id', 'status', 'id'])
    op.execute(FACE_ANNOTATIONS_VIEW)
    op.execute(LATEST_ANNOTATIONS_VIEW)


def downgrade() -> None:
    op.execute("DROP VIEW latest_annotations")
    op.execute("DROP VIEW face_annotations")
    op.drop_index('ix_images_sha256_model', table_name='images')
    op.drop_index('ix_images_path_model', table_name='images')
    op.create_index('ix_images_sha256', 'images', ['sha256'])
    op.create_index('ix_images_path', 'images', ['path'])
    if _postgresql():
        op.execute('ALTER TABLE images ALTER COLUMN path TYPE text COLLATE "default"')
    op.execute(FACE_ANNOTATIONS_VIEW)
    op.execute(LATEST_ANNOTATIONS_VIEW)
