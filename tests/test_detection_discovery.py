"""Face detectors and file discovery."""

from __future__ import annotations

import os

import cv2
import numpy as np
import pytest

from workers.jobs.discovery import DiscoveryError, find_images, parse_extensions
from workers.vision.detection import UnknownDetector, get_detector
from workers.vision.detector_names import DEFAULT_DETECTOR
from workers.vision.images import read_image


def test_haar_finds_the_face_in_real_photos_and_maps_boxes_back(photos_dir):
    detector = get_detector("haar")
    photos = sorted(photos_dir.glob("*.jpg"))[:20]
    found = [detector.detect(read_image(p).gray) for p in photos]
    assert sum(bool(f) for f in found) >= 18
    gray = read_image(photos[0]).gray
    big = cv2.resize(gray, None, fx=4, fy=4, interpolation=cv2.INTER_LINEAR)  # detected on a copy shrunk to 640
    small_box = max(detector.detect(gray), key=lambda d: d.w)
    big_box = max(detector.detect(big), key=lambda d: d.w)
    assert big_box.x == pytest.approx(4 * small_box.x, abs=24) and big_box.w == pytest.approx(4 * small_box.w, abs=32)


def test_blank_image_has_no_faces_and_unknown_detector_is_named():
    assert get_detector("haar").detect(np.full((200, 200), 128, np.uint8)) == []
    with pytest.raises(UnknownDetector, match="unknown detector 'x'; available: haar-verified, haar"):
        get_detector("x")


def test_find_images_filters_recurses_and_survives_symlink_loops(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    for name in ("a/one.JPG", "a/b/two.png", "a/notes.txt", "three.jpeg", "-dash 'quote' ü.jpg"):
        (tmp_path / name).write_bytes(b"x")
    os.symlink(tmp_path, tmp_path / "a" / "loop")
    found = [os.path.relpath(p, tmp_path) for p in find_images([str(tmp_path)])]
    assert found == ["-dash 'quote' ü.jpg", "three.jpeg", "a/one.JPG", "a/b/two.png"]
    flat = [os.path.basename(p) for p in find_images([str(tmp_path)], recursive=False)]
    assert flat == ["-dash 'quote' ü.jpg", "three.jpeg"]
    only_png = list(find_images([str(tmp_path)], extensions=parse_extensions("png")))
    assert [os.path.basename(p) for p in only_png] == ["two.png"]
    assert list(find_images([str(tmp_path / "three.jpeg"), str(tmp_path / "three.jpeg")])) == [str(tmp_path / "three.jpeg")]


def test_find_images_errors(tmp_path):
    with pytest.raises(DiscoveryError, match="no such file or directory"):
        list(find_images([str(tmp_path / "missing")]))
    with pytest.raises(DiscoveryError, match="at least one extension"):
        parse_extensions(" , ")


def test_detection_scale_maps_the_smallest_face_onto_the_window_whatever_the_size():
    from workers.vision.detection import detection_scale

    assert detection_scale((250, 250), 640, 24, 48) == 0.5  # small photos are shrunk too
    assert detection_scale((1500, 2000), 640, 24, 24) == 1.0  # never enlarged
    assert detection_scale((3000, 4000), 640, 24, 96) == 0.25
    assert detection_scale((3000, 4000), 640, 24, 0) == 0.16  # no smallest face: down to detect_side
    assert detection_scale((250, 250), 640, 24, 0) == 1.0


def test_small_photos_keep_their_faces_at_half_size(photos_dir):
    from workers.chunks.annotate import read_for_detection

    detector = get_detector("haar")
    photos = sorted(photos_dir.glob("*.jpg"))[:20]
    found = [detector.detect(read_for_detection(p).gray, 48) for p in photos]
    assert sum(bool(f) for f in found) >= 19
    assert all(box.w >= 48 for boxes in found for box in boxes)


def test_haar_fine_finds_more_faces_near_the_smallest_size(photos_dir, tmp_path):
    """A 3000x2000 JPEG of 24 real photos whose faces are 48-60 px wide (LFW faces are ~121 px in 250-px photos)."""
    from workers.chunks.annotate import read_for_detection

    rng = np.random.default_rng(0)
    scene = np.full((2000, 3000), 120, np.uint8)
    centres = []
    for index, photo in enumerate(sorted(photos_dir.glob("*.jpg"))[:24]):
        side = int(250 * rng.uniform(48, 60) / 121)
        top, left = (index // 6) * 480 + 60, (index % 6) * 480 + 60
        scene[top : top + side, left : left + side] = cv2.resize(read_image(photo).gray, (side, side), interpolation=cv2.INTER_AREA)
        centres.append((left + side / 2, top + side / 2))
    path = tmp_path / "scene.jpg"
    cv2.imwrite(str(path), scene, [cv2.IMWRITE_JPEG_QUALITY, 95])

    def faces_found(name: str) -> int:
        detector = get_detector(name)
        loaded = read_for_detection(path, 48, detector.window)
        boxes = [(b.x / loaded.scale, b.y / loaded.scale, b.w / loaded.scale) for b in detector.detect(loaded.gray, 48 * loaded.scale)]
        return sum(any(abs(x + w / 2 - cx) < 25 and abs(y + w / 2 - cy) < 25 for x, y, w in boxes) for cx, cy in centres)

    assert read_for_detection(path, 48, get_detector("haar-fine").window).scale == 1.0  # full resolution
    assert read_for_detection(path, 48, get_detector("haar").window).scale == 0.5
    fine, coarse = faces_found("haar-fine"), faces_found("haar")
    assert fine >= 22 and fine > coarse, (fine, coarse)


def test_min_face_in_pixels_or_relative_to_the_photo():
    from workers.vision.min_face import min_face_pixels, parse_min_face

    assert parse_min_face("48") == 48 and parse_min_face(64) == 64
    assert parse_min_face("2%") == "2%" and parse_min_face(" 2.50% ") == "2.5%"
    for bad in ("19", "0%", "101%", "big", "-5%"):
        with pytest.raises(ValueError):
            parse_min_face(bad)
    assert min_face_pixels(48, 4000, 3000) == 48
    assert min_face_pixels("2%", 4000, 3000) == 60  # of the shorter side
    assert min_face_pixels("2%", 250, 250) == 24  # never under the floor


def test_cli_takes_a_relative_min_face_and_refuses_nonsense():
    from click.testing import CliRunner

    from cli.main import fer

    result = CliRunner().invoke(fer, ["annotate", "/nonexistent", "--min-face", "0%"])
    assert result.exit_code == 2 and "0-100%" in result.output


@pytest.mark.slow
def test_the_default_detector_finds_a_48_px_face_that_haar_misses(photos_dir, tmp_path):
    """A real photo shrunk until its face is 48 px wide (the default --min-face), alone on a gray page."""
    from workers.chunks.annotate import read_for_detection

    side = round(250 * 48 / 121)  # LFW faces are ~121 px wide in their 250-px photos
    page = np.full((400, 400), 128, np.uint8)
    page[150 : 150 + side, 150 : 150 + side] = cv2.resize(read_image(photos_dir / "Adam_Scott_0001.jpg").gray,
                                                          (side, side), interpolation=cv2.INTER_AREA)
    path = tmp_path / "page.png"
    cv2.imwrite(str(path), page)
    centre = 150 + side * 125 / 250, 150 + side * 126 / 250

    def finds_the_face(name: str) -> bool:
        detector = get_detector(name)
        loaded = read_for_detection(path, 48, detector.window)
        return any(abs((b.x + b.w / 2) / loaded.scale - centre[0]) <= 24 and abs((b.y + b.h / 2) / loaded.scale - centre[1]) <= 24
                   and 24 <= b.w / loaded.scale <= 96 for b in detector.detect(loaded.gray, 48 * loaded.scale))

    assert DEFAULT_DETECTOR == "haar-verified"
    assert not finds_the_face("haar")
    assert finds_the_face(DEFAULT_DETECTOR)
