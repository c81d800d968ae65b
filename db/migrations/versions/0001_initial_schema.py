"""initial schema: jobs, images, faces, models and the face_annotations view

Revision ID: 0001
Revises: 
Create Date: 2026-11-24
"""

from alembic import op
import sqlalchemy as sa

# The view as this revision creates it (frozen here: the models' current definition may differ).
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

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('jobs',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('roots', sa.JSON(), nullable=False),
    sa.Column('options', sa.JSON(), nullable=False),
    sa.Column('images_total', sa.Integer(), nullable=False),
    sa.Column('images_done', sa.Integer(), nullable=False),
    sa.Column('images_failed', sa.Integer(), nullable=False),
    sa.Column('faces_found', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('models',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('version', sa.String(length=64), nullable=False),
    sa.Column('file_sha256', sa.String(length=64), nullable=False),
    sa.Column('metrics', sa.JSON(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('name', 'version', name='uq_models_name_version')
    )
    op.create_table('images',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('job_id', sa.Integer(), nullable=False),
    sa.Column('path', sa.Text(), nullable=False),
    sa.Column('size', sa.BigInteger(), nullable=True),
    sa.Column('mtime', sa.Float(), nullable=True),
    sa.Column('sha256', sa.String(length=64), nullable=True),
    sa.Column('width', sa.Integer(), nullable=True),
    sa.Column('height', sa.Integer(), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('processed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('duration_ms', sa.Float(), nullable=True),
    sa.ForeignKeyConstraint(['job_id'], ['jobs.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('job_id', 'path', name='uq_images_job_path')
    )
    with op.batch_alter_table('images', schema=None) as batch_op:
        batch_op.create_index('ix_images_job_status', ['job_id', 'status'], unique=False)
        batch_op.create_index('ix_images_sha256', ['sha256'], unique=False)

    op.create_table('faces',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('image_id', sa.Integer(), nullable=False),
    sa.Column('model_id', sa.Integer(), nullable=False),
    sa.Column('face_index', sa.Integer(), nullable=False),
    sa.Column('x', sa.Integer(), nullable=False),
    sa.Column('y', sa.Integer(), nullable=False),
    sa.Column('w', sa.Integer(), nullable=False),
    sa.Column('h', sa.Integer(), nullable=False),
    sa.Column('detector_score', sa.Float(), nullable=True),
    sa.Column('label', sa.String(length=16), nullable=False),
    sa.Column('confidence', sa.Float(), nullable=False),
    sa.Column('p_angry', sa.Float(), nullable=False),
    sa.Column('p_disgust', sa.Float(), nullable=False),
    sa.Column('p_fear', sa.Float(), nullable=False),
    sa.Column('p_happy', sa.Float(), nullable=False),
    sa.Column('p_neutral', sa.Float(), nullable=False),
    sa.Column('p_sad', sa.Float(), nullable=False),
    sa.Column('p_surprise', sa.Float(), nullable=False),
    sa.ForeignKeyConstraint(['image_id'], ['images.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['model_id'], ['models.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('image_id', 'model_id', 'face_index', name='uq_faces_image_model_index')
    )
    with op.batch_alter_table('faces', schema=None) as batch_op:
        batch_op.create_index('ix_faces_label', ['label'], unique=False)

    op.execute(FACE_ANNOTATIONS_VIEW)



def downgrade() -> None:
    op.execute("DROP VIEW face_annotations")
    with op.batch_alter_table('faces', schema=None) as batch_op:
        batch_op.drop_index('ix_faces_label')

    op.drop_table('faces')
    with op.batch_alter_table('images', schema=None) as batch_op:
        batch_op.drop_index('ix_images_sha256')
        batch_op.drop_index('ix_images_job_status')

    op.drop_table('images')
    op.drop_table('models')
    op.drop_table('jobs')
