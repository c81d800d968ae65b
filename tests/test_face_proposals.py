"""The default detector's parts: the shortened cascade's proposals and their grouping."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from workers.vision.face_proposals import group_windows, raw_windows, truncated_cascade

CASCADE = "haarcascade_frontalface_default.xml"


def test_a_shortened_cascade_passes_every_window_the_full_one_passes_and_more():
    rng = np.random.default_rng(0)
    gray = cv2.GaussianBlur(rng.integers(0, 255, (240, 320), dtype=np.uint8), (5, 5), 0)
    full = cv2.CascadeClassifier(str(cv2.data.haarcascades + CASCADE))
    full_boxes, _ = raw_windows(full, gray, 1.25, 24)
    short_boxes, weights = raw_windows(truncated_cascade(CASCADE, 10), gray, 1.25, 24)
    assert len(short_boxes) > len(full_boxes) and len(weights) == len(short_boxes)
    assert {tuple(b) for b in full_boxes} <= {tuple(b) for b in short_boxes}


def test_a_cascade_cannot_be_cut_past_its_stages_or_read_from_a_missing_file():
    with pytest.raises(ValueError, match="fewer than 26 stages"):
        truncated_cascade(CASCADE, 26)
    with pytest.raises(FileNotFoundError, match="missing"):
        truncated_cascade("no_such_cascade.xml", 5)


def test_windows_group_as_opencv_groups_them_and_every_group_is_kept():
    boxes = np.array([[100, 100, 40, 40], [102, 101, 40, 40], [104, 102, 42, 42],  # one face, three windows
                      [300, 50, 30, 30],  # a window alone
                      [100, 100, 80, 80]], dtype=float)  # same corner, twice the size: another group
    weights = np.array([1.0, 3.0, 2.0, -1.0, 0.5])
    groups = sorted(group_windows(boxes, weights), key=lambda g: -g.weight)
    assert [(g.windows, g.weight) for g in groups] == [(3, 3.0), (1, 0.5), (1, -1.0)]
    assert groups[0].x == pytest.approx(102) and groups[0].w == pytest.approx(122 / 3)
    assert group_windows(np.zeros((0, 4)), np.zeros(0)) == []


def test_the_committed_verifier_scores_boxes_and_gives_nothing_to_a_box_outside_the_image():
    from workers.vision.face_verifier import FaceVerifier, crop_box

    gray = np.full((100, 100), 128, np.uint8)
    assert crop_box(gray, 90, 10, 20, 20) is None and crop_box(gray, 10, 10, 20, 20).shape == (24, 24)
    probabilities = FaceVerifier().face_probabilities(gray, [(10, 10, 40, 40), (-5, 0, 30, 30)])
    assert probabilities.shape == (2,) and 0 < probabilities[0] < 1 and probabilities[1] == 0


def test_verifier_training_examples_have_the_verifier_input_size():
    from workers.vision.verifier_training import partial_face_crops, positive_crops

    rng = np.random.default_rng(0)
    faces = rng.integers(0, 255, (5, 48, 48), dtype=np.uint8)
    assert positive_crops(faces, rng).shape == (5, 24, 24)
    assert partial_face_crops(faces, 7, rng).shape == (7, 24, 24)


def test_confident_candidates_are_faces_doubtful_ones_are_rescanned_and_weak_ones_dropped(monkeypatch):
    """The default detector's decision on each candidate, with the verifier and the rescans stood in for."""
    from workers.vision import detection
    from workers.vision.face_proposals import Candidate

    # score = log-odds(p) + 3 ln(windows) + weight; with one window it is the verifier's log-odds plus the weight
    candidates = {  # box -> (the verifier's probability, the best last-stage sum)
        (10.0, 10.0, 30.0, 30.0): (0.99, 12.0),  # 4.6 + 12: accepted as it is
        (100.0, 10.0, 30.0, 30.0): (0.9, 0.0),  # 2.2: rescanned, finds a face with 9 windows
        (200.0, 10.0, 30.0, 30.0): (0.99, 0.0),  # 4.6: rescanned, finds only 4 windows on a doubtful box: dropped
        (300.0, 10.0, 30.0, 30.0): (0.9997, 4.0),  # 8.1 + 4, confident: rescanned, 4 windows are enough
        (400.0, 10.0, 30.0, 30.0): (0.1, 0.0),  # -2.2: not a face, not rescanned
        (500.0, 10.0, 30.0, 30.0): (0.6, 0.0),  # 0.4: rescanned, 4 windows on a box the verifier is sure of
        (600.0, 10.0, 30.0, 30.0): (0.9, 0.0),  # rescanned, 12 windows on a box the verifier rejects: dropped
        (700.0, 10.0, 30.0, 30.0): (0.9999, 8.0),  # 9.2 + 8: accepted, surer than the rescanned box on its face
        (705.0, 12.0, 30.0, 30.0): (0.9, 0.0),
        (800.0, 10.0, 30.0, 30.0): (0.9, 15.0),  # 2.2 + 15: accepted, less sure than the rescanned box on its face
        (805.0, 12.0, 30.0, 30.0): (0.9, 0.0),
    }
    rescan_finds = {  # candidate's x -> (windows, box found, the verifier's probability on that box)
        100.0: [(9, (98.0, 9.0, 33.0, 33.0), 0.5), (3, (150.0, 9.0, 33.0, 33.0), 0.99)],
        200.0: [(4, (201.0, 11.0, 29.0, 29.0), 0.5)], 300.0: [(4, (301.0, 11.0, 29.0, 29.0), 0.5)],
        500.0: [(4, (501.0, 11.0, 29.0, 29.0), 0.95)], 600.0: [(12, (601.0, 11.0, 29.0, 29.0), 0.01)],
        705.0: [(20, (702.0, 11.0, 30.0, 30.0), 0.99)], 805.0: [(8, (803.0, 11.0, 31.0, 31.0), 0.99)],
    }
    probabilities = {box: p for box, (p, _) in candidates.items()}
    probabilities |= {box: p for finds in rescan_finds.values() for _, box, p in finds}
    rescanned = []
    detector = detection.get_detector("haar-verified")
    monkeypatch.setattr(detection, "raw_windows", lambda *args: (np.zeros((0, 4)), np.zeros(0)))
    monkeypatch.setattr(detection, "group_windows", lambda *args: [Candidate(*box, windows=1, weight=weight)
                                                                   for box, (_, weight) in candidates.items()])
    monkeypatch.setattr(detector.verifier, "face_probabilities", lambda gray, boxes: np.array(
        [probabilities[tuple(box)] for box in boxes]))

    def rescan(small, box, smallest):
        rescanned.append(box[0])
        return [(windows, found) for windows, found, _ in rescan_finds.get(box[0], [])
                if windows > detection.RESCAN_WEAK_NEIGHBOURS]

    monkeypatch.setattr(detector, "_rescan", rescan)
    faces = detector.detect(np.zeros((200, 1000), np.uint8), min_face_size=24)  # 24 px: detected at full size
    assert sorted(rescanned) == [100.0, 200.0, 300.0, 500.0, 600.0, 705.0, 805.0]
    assert sorted((f.x, f.y, f.w) for f in faces) == [(10, 10, 30), (98, 9, 33), (301, 11, 29), (501, 11, 29),
                                                      (700, 10, 30), (803, 11, 31)]
