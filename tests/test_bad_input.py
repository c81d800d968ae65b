"""A corpus of broken and awkward inputs, generated here, run through the whole pipeline.

Each file ends `done` or `failed` with a clear message; the real photo beside them is
annotated as usual; nothing crashes a worker, and file names are never interpreted.
"""

from __future__ import annotations

import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image
from sqlalchemy import select

from cli.main import fer
from tests.conftest import annotate_json
from cli.output import EXIT_PARTIAL
from db.models import Face
from db.models import Image as ImageRow
from db.reads import image_ids
from db.writes import create_job
from db.session import make_engine
from workers.chunks.work import process_chunk
from workers.jobs.options import JobOptions

# Real photos, real servers or whole benchmark runs: the full suite (`make test`), not the fast lane.
pytestmark = pytest.mark.slow

AWKWARD_NAMES = ["with space.jpg", "quote'\"s.jpg", "ünïcødé-顔.jpg", "new\nline.jpg", "-leading-dash.jpg",
                 "a'; DROP TABLE faces; --.jpg", "[red]markup.jpg"]


def _bomb_png() -> bytes:
    """A valid PNG header claiming 50,000 x 50,000 pixels, with almost no data."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        import zlib

        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", 50_000, 50_000, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", b"") + chunk(b"IEND", b"")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, photos_dir) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("corpus")
    photo = sorted(photos_dir.glob("*.jpg"))[0]
    shutil.copy(photo, root / "real.jpg")
    (root / "zero.jpg").write_bytes(b"")
    (root / "truncated.jpg").write_bytes(photo.read_bytes()[:600])
    (root / "text.jpg").write_text("hello, I am not a picture")
    Image.fromarray(np.zeros((40, 40, 4), np.uint8)).save(root / "alpha.png")
    Image.fromarray(np.full((40, 40), 40_000, np.uint16)).save(root / "sixteen.png")
    Image.new("CMYK", (40, 40), (0, 0, 0, 0)).save(root / "cmyk.jpg")
    Image.new("L", (1, 1), 0).save(root / "one.png")
    (root / "bomb.png").write_bytes(_bomb_png())
    frames = [Image.new("L", (30, 30), v) for v in (0, 255)]
    frames[0].save(root / "anim.gif", save_all=True, append_images=frames[1:])
    (root / "photo.heic").write_bytes(b"\x00\x00\x00\x18ftypheic" + bytes(64))
    # EXIF orientation 6: stored rotated 90 degrees counter-clockwise, shown upright.
    upright = Image.open(photo)
    exif = Image.Exif()
    exif[0x0112] = 6
    upright.transpose(Image.Transpose.ROTATE_90).save(root / "rotated.jpg", exif=exif, quality=95)
    for name in AWKWARD_NAMES:
        shutil.copy(photo, root / name)
    (root / "loop").symlink_to(root, target_is_directory=True)
    return root, photo


@pytest.fixture(scope="module")
def corpus_run(corpus, tmp_path_factory):
    root, _ = corpus
    database = f"sqlite:///{tmp_path_factory.mktemp('db') / 'fer.db'}"
    report = annotate_json(root, database, "--ext", "jpg,png,gif,heic", "--chunk-size", "4", exit_code=EXIT_PARTIAL)
    engine = make_engine(database)
    with engine.connect() as connection:
        rows = {Path(r.path).name: r for r in connection.execute(select(ImageRow))}
        faces = {}
        for path, x, y, w, h in connection.execute(select(ImageRow.path, Face.x, Face.y, Face.w, Face.h).join(Face)):
            faces.setdefault(Path(path).name, []).append((x, y, w, h))
    engine.dispose()
    return rows, faces, report


@pytest.mark.parametrize(
    ("name", "status", "message"),
    [
        ("zero.jpg", "failed", "empty file"),
        ("truncated.jpg", "failed", "truncated"),
        ("text.jpg", "failed", "not an image"),
        ("alpha.png", "done", None),
        ("sixteen.png", "done", None),
        ("cmyk.jpg", "done", None),
        ("one.png", "done", None),
        ("bomb.png", "failed", "decompression bomb"),
        ("anim.gif", "done", None),
        ("photo.heic", "failed", "unsupported format .heic"),
    ],
)
def test_each_bad_input_ends_done_or_failed_with_a_clear_message(corpus_run, name, status, message):
    rows, _, _ = corpus_run
    assert rows[name].status == status
    if message:
        assert message in rows[name].error
    else:
        assert rows[name].error is None


def test_the_rest_of_the_job_is_unaffected_and_awkward_names_are_ordinary(corpus_run):
    rows, faces, report = corpus_run
    assert report["status"] == "finished" and report["images"]["pending"] == 0
    for name in ["real.jpg", *AWKWARD_NAMES]:
        assert rows[name].status == "done" and faces[name] == faces["real.jpg"], name
    assert not any("loop" in Path(r.path).parts for r in rows.values())  # the symlink loop is not followed


def test_exif_rotated_photo_gives_boxes_in_upright_coordinates(corpus_run):
    rows, faces, _ = corpus_run
    assert (rows["rotated.jpg"].width, rows["rotated.jpg"].height) == (rows["real.jpg"].width, rows["real.jpg"].height)
    (x, y, w, h), (rx, ry, rw, rh) = faces["real.jpg"][0], faces["rotated.jpg"][0]
    assert abs(x - rx) <= 6 and abs(y - ry) <= 6 and abs(w - rw) <= 8


def test_report_by_folder_prints_names_literally(corpus_run, corpus, tmp_path):
    root, photo = corpus
    folder = tmp_path / "[bold]odd"
    folder.mkdir()
    shutil.copy(photo, folder / "x.jpg")
    database = f"sqlite:///{tmp_path / 'fer.db'}"
    runner = CliRunner()
    assert runner.invoke(fer, ["annotate", str(folder), "--db", database]).exit_code == 0
    result = runner.invoke(fer, ["report", "--by", "folder", "--db", database])
    assert result.exit_code == 0, result.output
    flat = "".join(line.strip(" │┃") for line in result.output.splitlines())
    assert "[bold]odd" in flat  # shown as typed, not taken as rich markup


def test_file_deleted_between_submit_and_processing_fails_cleanly(tmp_path, photos_dir):
    photo = tmp_path / "gone.jpg"
    shutil.copy(sorted(photos_dir.glob("*.jpg"))[0], photo)
    database = f"sqlite:///{tmp_path / 'fer.db'}"
    assert CliRunner().invoke(fer, ["db", "upgrade", "--db", database]).exit_code == 0
    engine = make_engine(database)
    job = create_job(engine, [str(tmp_path)], {"model": "default"}, [str(photo)])
    photo.unlink()
    process_chunk(database, job, image_ids(engine, job), JobOptions(model="default", allowed_roots=(str(tmp_path),)))
    with engine.connect() as connection:
        status, error = connection.execute(select(ImageRow.status, ImageRow.error)).one()
    engine.dispose()
    assert status == "failed" and "file not found" in error
