"""How the benchmarks score detections against the known faces (bench/pipeline.py)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

from pipeline import precision, recall  # noqa: E402

TRUTH = {"a.jpg": [[100, 100, 50, 50], [300, 100, 50, 50]], "b.jpg": [[10, 10, 60, 60]]}


def test_recall_and_precision_count_each_true_face_once():
    found = {
        "a.jpg": [(102, 98, 52, 52), (95, 105, 60, 60), (600, 600, 50, 50)],  # a face twice, and a false box
        "b.jpg": [(15, 12, 55, 55)],
    }
    assert recall(TRUTH, found) == 2 / 3
    assert precision(TRUTH, found) == 2 / 4


def test_a_box_of_the_wrong_size_or_too_far_off_centre_finds_nothing():
    found = {"a.jpg": [(100, 100, 150, 150), (130, 100, 50, 50)], "b.jpg": []}
    assert recall(TRUTH, found) == 0 and precision(TRUTH, found) == 0
    assert precision(TRUTH, {}) == 1.0  # no boxes, none false
