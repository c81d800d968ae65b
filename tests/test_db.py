"""The results schema on real SQLite and PostgreSQL: migrations, the view, idempotent writes."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from click.testing import CliRunner
from sqlalchemy import inspect, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from cli.main import fer
from db.models import Base, Face, Image, Job, Model
from db.session import current_revision, head_revision, make_engine, upgrade

@pytest.fixture
def engine(database_url):
    engine = make_engine(database_url)
    upgrade(engine)
    yield engine
    engine.dispose()


def test_migrations_reach_head_and_match_the_models(engine):
    from db.session import newest_revision

    assert current_revision(engine) == head_revision() == newest_revision()
    with engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert differences == []
    assert {"face_annotations"} <= set(inspect(engine).get_view_names())


MIGRATIONS = Path(__file__).resolve().parents[1] / "db" / "migrations" / "versions"
PROJECT_PACKAGES = {"cli", "db", "fer_model", "reports", "workers", "bench", "tests"}


def test_no_migration_imports_the_project_s_live_modules():
    """A migration creates what its revision created, whatever the models say today: the SQL and code it runs are
    frozen inside it, never imported from the project (db.models, the photo readers, ...)."""
    imports = []
    for path in sorted(MIGRATIONS.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0 else [])
            imports += [f"{path.name}: {name}" for name in names if name.split(".")[0] in PROJECT_PACKAGES]
    assert len(list(MIGRATIONS.glob("*.py"))) >= 8
    assert imports == []


def test_the_migrated_views_are_the_views_the_models_define(tmp_path):
    """db/models.py states the views as they are now; the newest migration that creates each must agree."""
    from db.models import FACE_ANNOTATIONS_VIEW, LATEST_ANNOTATIONS_VIEW

    engine = make_engine(f"sqlite:///{tmp_path / 'views.db'}")
    upgrade(engine)
    with engine.connect() as connection:
        views = dict(connection.execute(text("SELECT name, sql FROM sqlite_master WHERE type = 'view'")).all())
    engine.dispose()
    assert {name: " ".join(sql.split()) for name, sql in views.items()} == {
        "face_annotations": " ".join(FACE_ANNOTATIONS_VIEW.split()),
        "latest_annotations": " ".join(LATEST_ANNOTATIONS_VIEW.split()),
    }


def _face(image: Image, model: Model, index: int) -> Face:
    probabilities = dict(p_angry=0.1, p_disgust=0.0, p_fear=0.1, p_happy=0.6, p_neutral=0.1, p_sad=0.05, p_surprise=0.05)
    return Face(image=image, model=model, face_index=index, x=1, y=2, w=30, h=30, detector_score=0.9,
                label="happy", confidence=0.6, **probabilities)


def test_view_joins_faces_to_paths_and_models(engine):
    with Session(engine) as session:
        job = Job(roots=["/photos"], options={"chunk_size": 8})
        model = Model(name="seed", version="abc", file_sha256="0" * 64, metrics={"accuracy": 0.6})
        image = Image(job=job, path="/photos/a'; DROP TABLE faces; --.jpg", status="done")
        session.add_all([job, model, image, _face(image, model, 0), _face(image, model, 1)])
        session.commit()
    with engine.connect() as connection:
        rows = connection.execute(text("SELECT path, label, model, face_index FROM face_annotations ORDER BY face_index")).all()
    assert [tuple(row) for row in rows] == [
        ("/photos/a'; DROP TABLE faces; --.jpg", "happy", "seed", 0),
        ("/photos/a'; DROP TABLE faces; --.jpg", "happy", "seed", 1),
    ]


def test_duplicate_images_and_faces_are_refused(engine):
    with Session(engine) as session:
        job = Job()
        model = Model(name="seed", version="abc", file_sha256="0" * 64)
        image = Image(job=job, path="/p/a.jpg")
        session.add_all([job, model, image, _face(image, model, 0)])
        session.commit()
        job_id, model_id, image_id = job.id, model.id, image.id

    with Session(engine) as session:
        session.add(Image(job_id=job_id, path="/p/a.jpg"))
        with pytest.raises(IntegrityError):
            session.commit()
    with Session(engine) as session:
        image = session.get(Image, image_id)
        session.add(_face(image, session.get(Model, model_id), 0))
        with pytest.raises(IntegrityError):
            session.commit()
    with Session(engine) as session:
        assert session.scalar(select(Face.id).where(Face.image_id == image_id)) is not None
        assert len(session.scalars(select(Face)).all()) == 1


def test_fer_db_upgrade_command(database_url):
    result = CliRunner().invoke(fer, ["db", "upgrade", "--db", database_url])
    assert result.exit_code == 0, result.output
    assert f"revision {head_revision()}" in result.output
    again = CliRunner().invoke(fer, ["db", "upgrade", "--db", database_url])
    assert again.exit_code == 0, again.output


def test_unreachable_database_is_a_clear_error():
    result = CliRunner().invoke(fer, ["db", "upgrade", "--db", "postgresql://nobody@127.0.0.1:1/none"])
    assert result.exit_code == 1
    assert "cannot upgrade" in result.output and "Traceback" not in result.output


def test_upgrading_a_database_with_results_keeps_every_row(database_url):
    """Migrations that rebuild tables (SQLite) must not cascade-delete the rows that reference them."""
    from sqlalchemy import text

    engine = make_engine(database_url)
    upgrade(engine, "0001")
    with engine.begin() as connection:
        connection.execute(text("INSERT INTO models (id, name, version, file_sha256, metrics) VALUES (1, 'seed', 'v1', 'f', '{}')"))
        connection.execute(text(
            "INSERT INTO jobs (id, created_at, status, roots, options, images_total, images_done, images_failed, faces_found) "
            "VALUES (1, '2026-01-01 00:00:00', 'finished', '[]', '{}', 1, 1, 0, 1)"
        ))
        connection.execute(text("INSERT INTO images (id, job_id, path, status) VALUES (1, 1, '/photos/a.jpg', 'done')"))
        connection.execute(text("INSERT INTO images (id, job_id, path, status) VALUES (2, 1, '/photos/no-face.jpg', 'done')"))
        connection.execute(text("INSERT INTO images (id, job_id, path, status) VALUES (3, 1, '/photos/bad.jpg', 'failed')"))
        connection.execute(text(
            "INSERT INTO faces (id, image_id, model_id, face_index, x, y, w, h, label, confidence, p_angry, p_disgust, "
            "p_fear, p_happy, p_neutral, p_sad, p_surprise) VALUES (1, 1, 1, 0, 0, 0, 9, 9, 'happy', 0.9, 0, 0, 0, 0.9, 0.1, 0, 0)"
        ))
    upgrade(engine)
    with engine.connect() as connection:
        counts = [connection.scalar(text(f"SELECT COUNT(*) FROM {table}")) for table in ("jobs", "images", "faces", "face_annotations")]
        assert counts == [1, 3, 1, 1]
        # Backfilled from the image's faces, or from its job's one model; failed images have none.
        assert connection.execute(text("SELECT id, model_id FROM images ORDER BY id")).all() == [(1, 1), (2, 1), (3, None)]
        if engine.dialect.name == "sqlite":
            assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    engine.dispose()


def test_upgrading_fills_the_photo_dates_of_images_annotated_before(database_url, tmp_path):
    """Reports take photo dates from the database; the migration that adds them reads the files annotated before
    (once per content), and leaves gone files, photos without EXIF dates and failed images without one."""
    import datetime as dt

    from PIL import Image as Picture
    from sqlalchemy import text

    picture = Picture.new("RGB", (32, 32), "gray")
    exif = Picture.Exif()
    exif.get_ifd(0x8769)[0x9003] = "2019:07:14 10:30:00"  # DateTimeOriginal
    picture.save(tmp_path / "dated.jpg", exif=exif)
    picture.save(tmp_path / "dated-but-failed.jpg", exif=exif)
    picture.save(tmp_path / "plain.jpg")
    rows = [  # id, path, status, sha256
        (1, tmp_path / "dated.jpg", "done", "a"), (2, tmp_path / "plain.jpg", "done", "b"),
        (3, tmp_path / "gone.jpg", "done", "c"), (4, tmp_path / "copy-gone-since.jpg", "done", "a"),
        (5, tmp_path / "dated-but-failed.jpg", "failed", None),
    ]
    engine = make_engine(database_url)
    upgrade(engine, "0005")
    with engine.begin() as connection:
        connection.execute(text(
            "INSERT INTO jobs (id, created_at, status, roots, options, images_total, images_done, images_failed, "
            "faces_found) VALUES (1, '2026-01-01 00:00:00', 'finished', '[]', '{}', 5, 4, 1, 0)"))
        for image_id, path, status, sha256 in rows:
            connection.execute(text("INSERT INTO images (id, job_id, path, status, sha256) VALUES (:id, 1, :path, "
                                    ":status, :sha256)"), {"id": image_id, "path": str(path), "status": status,
                                                           "sha256": sha256})
    upgrade(engine)
    with engine.connect() as connection:
        dates = dict(connection.execute(select(Image.id, Image.taken_at)).all())
    engine.dispose()
    taken = dt.datetime(2019, 7, 14, 10, 30)
    assert dates == {1: taken, 2: None, 3: None, 4: taken, 5: None}


def test_the_photo_date_and_index_migrations_go_down_and_up_again_keeping_every_row(database_url):
    from alembic import command
    from sqlalchemy import text

    from db.session import alembic_config

    engine = make_engine(database_url)
    upgrade(engine)
    with Session(engine) as session:
        job = Job(roots=["/photos"], options={})
        model = Model(name="seed", version="abc", file_sha256="0" * 64)
        image = Image(job=job, path="/photos/a.jpg", status="done")
        session.add_all([job, model, image])
        session.flush()
        image.model_id = model.id
        session.add(_face(image, model, 0))
        session.commit()
    command.downgrade(alembic_config(engine), "0005")
    assert current_revision(engine) == "0005"
    upgrade(engine)
    with engine.connect() as connection:
        counts = [connection.scalar(text(f"SELECT COUNT(*) FROM {name}"))
                  for name in ("images", "faces", "face_annotations", "latest_annotations")]
    engine.dispose()
    assert current_revision(engine) == head_revision() and counts == [1, 1, 1, 1]
