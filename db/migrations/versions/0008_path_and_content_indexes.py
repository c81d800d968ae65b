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

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None

# The views as this revision creates them (frozen here: the models' current definitions may differ), and
# latest_annotations as 0005 created it, for the way down.
FACE_ANNOTATIONS_VIEW = """
CREATE VIEW face_annotations AS
SELECT images.path AS path, images.job_id AS job_id, faces.face_index AS face_index,
       faces.x AS x, faces.y AS y, faces.w AS w, faces.h AS h,
       faces.label AS label, faces.confidence AS confidence,
       faces.p_angry AS p_angry, faces.p_disgust AS p_disgust, faces.p_fear AS p_fear,
       faces.p_happy AS p_happy, faces.p_neutral AS p_neutral, faces.p_sad AS p_sad,
       faces.p_surprise AS p_surprise,
       models.name AS model, models.version AS model_version
FROM faces
JOIN images ON images.id = faces.image_id
JOIN models ON models.id = faces.model_id
"""

# "No newer done row of the same path and model": one index seek per face on SQLite (ix_images_path_model).
LATEST_ANNOTATIONS_VIEW = """
CREATE VIEW latest_annotations AS
SELECT images.path AS path, images.job_id AS job_id, images.id AS image_id, images.processed_at AS processed_at,
       faces.face_index AS face_index,
       faces.x AS x, faces.y AS y, faces.w AS w, faces.h AS h,
       faces.label AS label, faces.confidence AS confidence,
       faces.p_angry AS p_angry, faces.p_disgust AS p_disgust, faces.p_fear AS p_fear,
       faces.p_happy AS p_happy, faces.p_neutral AS p_neutral, faces.p_sad AS p_sad,
       faces.p_surprise AS p_surprise,
       models.name AS model, models.version AS model_version
FROM faces
JOIN images ON images.id = faces.image_id
JOIN models ON models.id = faces.model_id
WHERE images.missing_at IS NULL AND images.status = 'done' AND images.model_id = faces.model_id
  AND NOT EXISTS (SELECT 1 FROM images AS newer
                  WHERE newer.path = images.path AND newer.model_id = faces.model_id AND newer.status = 'done'
                    AND newer.id > images.id)
"""

LATEST_ANNOTATIONS_VIEW_0005 = """
CREATE VIEW latest_annotations AS
SELECT images.path AS path, images.job_id AS job_id, images.id AS image_id, images.processed_at AS processed_at,
       faces.face_index AS face_index,
       faces.x AS x, faces.y AS y, faces.w AS w, faces.h AS h,
       faces.label AS label, faces.confidence AS confidence,
       faces.p_angry AS p_angry, faces.p_disgust AS p_disgust, faces.p_fear AS p_fear,
       faces.p_happy AS p_happy, faces.p_neutral AS p_neutral, faces.p_sad AS p_sad,
       faces.p_surprise AS p_surprise,
       models.name AS model, models.version AS model_version
FROM faces
JOIN images ON images.id = faces.image_id
JOIN models ON models.id = faces.model_id
WHERE images.missing_at IS NULL
  AND images.id = (SELECT MAX(latest.id) FROM images AS latest
                   WHERE latest.path = images.path AND latest.model_id = faces.model_id AND latest.status = 'done')
"""


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
    op.execute(LATEST_ANNOTATIONS_VIEW_0005)
