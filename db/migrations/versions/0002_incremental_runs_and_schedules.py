"""incremental runs and schedules: image model/change/link/missing, job skip counts, schedules

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24
"""

from alembic import op
import sqlalchemy as sa

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None

# The view as 0001 created it; SQLite rebuilds `images` below, which a view over it would block.
FACE_ANNOTATIONS_VIEW_0001 = """
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


def upgrade() -> None:
    op.execute("DROP VIEW face_annotations")
    op.create_table('schedules',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('root', sa.Text(), nullable=False),
    sa.Column('at', sa.String(length=5), nullable=False),
    sa.Column('timezone', sa.String(length=64), nullable=False),
    sa.Column('options', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_run_on', sa.String(length=10), nullable=True),
    sa.Column('last_job_id', sa.Integer(), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('images_unchanged', sa.Integer(), nullable=False, server_default='0'))
        batch_op.add_column(sa.Column('images_missing', sa.Integer(), nullable=False, server_default='0'))
        batch_op.add_column(sa.Column('schedule_id', sa.Integer(), nullable=True))
        batch_op.create_foreign_key('fk_jobs_schedule_id_schedules', 'schedules', ['schedule_id'], ['id'], ondelete='SET NULL')

    with op.batch_alter_table('images', schema=None) as batch_op:
        batch_op.add_column(sa.Column('model_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('change', sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column('linked_from_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('missing_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.create_foreign_key('fk_images_model_id_models', 'models', ['model_id'], ['id'])
        batch_op.create_foreign_key('fk_images_linked_from_id_images', 'images', ['linked_from_id'], ['id'], ondelete='SET NULL')
        batch_op.create_index('ix_images_path', ['path'], unique=False)
        batch_op.create_index('ix_images_model_status', ['model_id', 'status'], unique=False)
    # Images annotated before this migration: the model is the one their faces name.
    op.execute(
        "UPDATE images SET model_id = (SELECT MIN(faces.model_id) FROM faces WHERE faces.image_id = images.id) "
        "WHERE model_id IS NULL"
    )
    # Done images without faces: the model of their job, when the job's faces name exactly one.
    op.execute(
        "UPDATE images SET model_id = (SELECT MIN(f.model_id) FROM faces f JOIN images i ON i.id = f.image_id "
        "WHERE i.job_id = images.job_id) "
        "WHERE model_id IS NULL AND status = 'done' AND (SELECT COUNT(DISTINCT f.model_id) FROM faces f "
        "JOIN images i ON i.id = f.image_id WHERE i.job_id = images.job_id) = 1"
    )
    op.execute(FACE_ANNOTATIONS_VIEW_0001)


def downgrade() -> None:
    op.execute("DROP VIEW face_annotations")
    with op.batch_alter_table('images', schema=None) as batch_op:
        batch_op.drop_index('ix_images_model_status')
        batch_op.drop_index('ix_images_path')
        batch_op.drop_constraint('fk_images_linked_from_id_images', type_='foreignkey')
        batch_op.drop_constraint('fk_images_model_id_models', type_='foreignkey')
        batch_op.drop_column('missing_at')
        batch_op.drop_column('linked_from_id')
        batch_op.drop_column('change')
        batch_op.drop_column('model_id')
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.drop_constraint('fk_jobs_schedule_id_schedules', type_='foreignkey')
        batch_op.drop_column('schedule_id')
        batch_op.drop_column('images_missing')
        batch_op.drop_column('images_unchanged')
    op.drop_table('schedules')
    op.execute(FACE_ANNOTATIONS_VIEW_0001)
