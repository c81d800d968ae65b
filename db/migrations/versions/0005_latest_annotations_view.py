"""the latest_annotations view: each file's latest annotation per model version

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25
"""

from alembic import op

# The view as this revision creates it (frozen here: the models' current definition may differ).
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
WHERE images.missing_at IS NULL
  AND images.id = (SELECT MAX(latest.id) FROM images AS latest
                   WHERE latest.path = images.path AND latest.model_id = faces.model_id AND latest.status = 'done')
"""

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(LATEST_ANNOTATIONS_VIEW)


def downgrade() -> None:
    op.execute("DROP VIEW latest_annotations")
