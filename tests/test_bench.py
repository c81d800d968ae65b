"""The benchmark scripts run end to end on a tiny workload (figures are printed, not asserted on timing)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

# Real photos, real servers or whole benchmark runs: the full suite (`make test`), not the fast lane.
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]


def test_classifier_bench_prints_faces_per_second_for_the_default_model():
    result = subprocess.run(
        [sys.executable, "bench/classifier.py", "--faces", "256", "--repeats", "1", "--recipe", "default"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.strip().splitlines()
    assert re.search(r"recipe default \(untrained architecture\): [\d,]+ faces/s", result.stdout)
    assert re.match(r"model [\w-]+ \([0-9a-f]{12}\): [\d,]+ faces/s", lines[-1])


def test_pipeline_bench_runs_on_a_tiny_archive(tmp_path, photos_dir):
    """Local and distributed runs and the figures; the `fer` peer needs its own venv, so it is left out here."""
    result = subprocess.run(
        [sys.executable, "bench/pipeline.py", "--photos", "10", "--mosaics", "1", "--skip-peer",
         "--photos-dir", str(photos_dir), "--archive", str(tmp_path / "archive"),
         "--broker", os.environ.get("FER_TEST_BROKER_URL", "redis://127.0.0.1:6379/13")],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "11 images (10 photos 250x250, 1 mosaics 4000x3000), 20 true faces" in result.stdout
    for line in ("fer-pipeline local, 1 process", "fer-pipeline distributed, 2 worker processes",
                 "Decoding floor", "Scaling, distributed 2 workers over 1"):
        assert line in result.stdout, line
    row = re.search(r"^fer-pipeline local, 1 process\s+[\d.]+\s+[\d.]+\s+\d+\s+([\d.]+)$", result.stdout, re.M)
    assert row and float(row.group(1)) >= 0.8


def test_consistency_bench_compares_pipeline_and_direct_accuracy(fer2013_dir):
    """The same model twice: the second classifies the served crops of the first's detection pass, and must agree
    with the labels the pipeline stored."""
    result = subprocess.run(
        [sys.executable, "bench/consistency.py", "--model", "seed", "--model", "seed", "--scenes", "30", "--margins", "0,0.2",
         "--data-dir", str(fer2013_dir.parent)],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    found = re.search(r"Pasted faces found: (\d+)/30", result.stdout)
    assert found and int(found.group(1)) >= 10
    assert re.search(r"crop margin 0\.00: pipeline accuracy [01]\.\d{4}  <- served", result.stdout)
    gaps = re.findall(r"^Pipeline accuracy ([01]\.\d{4}) vs direct ([01]\.\d{4}) on the same faces: gap -?\d+\.\d points$",
                      result.stdout, re.M)
    assert len(gaps) == 2 and gaps[0] == gaps[1], result.stdout


def test_ratio_bench_describes_itself():
    """bench/ratio.py times the full archives against the `fer` package's venv; here only its entry point is checked."""
    result = subprocess.run([sys.executable, "bench/ratio.py", "--help"], cwd=ROOT, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "wall time with start-up on both sides" in result.stdout


def test_small_face_scenes_are_built_once_with_faces_near_the_smallest_size(tmp_path, photos_dir):
    sys.path.insert(0, str(ROOT / "bench"))
    from pipeline import MOSAIC_SIZE, SMALL_FACE_WIDTHS, SMALL_FACES_PER_SCENE, build_small_faces

    folder = tmp_path / "small"
    truth = build_small_faces(photos_dir, folder, 2)
    assert sorted(truth) == ["small-faces/scene_0000.jpg", "small-faces/scene_0001.jpg"]
    for name, boxes in truth.items():
        assert (folder / name).is_file() and len(boxes) == SMALL_FACES_PER_SCENE
        for x, y, w, h in boxes:
            assert SMALL_FACE_WIDTHS[0] - 3 <= w <= SMALL_FACE_WIDTHS[1] and w == h
            assert 0 <= x and x + w <= MOSAIC_SIZE[0] and 0 <= y and y + h <= MOSAIC_SIZE[1]
    stamp = (folder / "small-faces/scene_0000.jpg").stat().st_mtime_ns
    assert build_small_faces(photos_dir, folder, 2) == truth  # cached: nothing is rewritten
    assert (folder / "small-faces/scene_0000.jpg").stat().st_mtime_ns == stamp


def test_scale_bench_times_every_nightly_command_at_both_sizes(tmp_path):
    """bench/scale.py on a tiny archive (5 photos a folder): every figure at both sizes, and a verdict on each target."""
    result = subprocess.run(
        [sys.executable, "bench/scale.py", "--photos", "5", "--images", "1000", "--baseline", "500",
         "--backends", "sqlite", "--repeats", "1", "--workdir", str(tmp_path / "scale"),
         "--broker", os.environ.get("FER_TEST_BROKER_URL", "redis://127.0.0.1:6379/13")],
        cwd=ROOT, capture_output=True, text=True, timeout=900,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    table = result.stdout.split("sqlite: 500 annotated images", 1)[1]
    for label in ("fer status", "fer report --all", "fer report --format html", "export peak memory",
                  "latest_annotations, counted whole", "known-content copy (50 files)",
                  "new folder of 5 unknown photos", "rerun of an unchanged 50-file folder", "rerun of the whole archive",
                  "fer status after a quiet night", "fer submit of 1,000 files", "cancel: queue free after"):
        assert re.search(rf"^\| {re.escape(label)} \| [\d,.]+ ", table, re.M), label
    assert re.search(r"^\| known-content copy \| .* \| >= 1,000 files/s, within 1.5x of the baseline: (met|\*\*not met\*\*) \|$",
                     table, re.M)
    assert not (tmp_path / "scale" / "archive").exists()  # removed at the end


def test_wal_bench_prints_the_largest_log_for_each_kind_of_reader():
    result = subprocess.run([sys.executable, "bench/wal.py", "--images", "640"], cwd=ROOT, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    for row in (r"\| index lookups \| SQLite's only \| [\d.]+ MB \|", r"\| whole-table reads \| SQLite's only \| [\d.]+ MB \|",
                r"\| whole-table reads \| SQLite's and the writer's \| [\d.]+ MB \|"):
        assert re.search(row, result.stdout), row
