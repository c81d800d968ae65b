"""Pluggable face detectors. Each finds faces in an upright gray image; none downloads anything.

Detectors work on a shrunk copy, and boxes are mapped back to the image they were
given. The copy is at most ``detect_side`` pixels on its longer side, except where
that would make a face of ``min_face_size`` pixels (in the given image) smaller than
the detector's smallest window: large photos with small faces keep the resolution
those faces need.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from workers.vision.detector_names import DEFAULT_DETECTOR, detector_problem
from workers.vision.face_proposals import group_windows, raw_windows, truncated_cascade
from workers.vision.face_verifier import VERIFIER_FILE, FaceVerifier


@dataclass(frozen=True)
class Detection:
    x: int
    y: int
    w: int
    h: int
    score: float


class FaceDetector(Protocol):
    name: str
    window: int  # the pixels a face needs in the image given to detect(): its smallest window

    def detect(self, gray: np.ndarray, min_face_size: float = 0.0) -> list[Detection]: ...


def detection_scale(shape: tuple[int, ...], detect_side: int, window: int, min_face_size: float) -> float:
    """How much to shrink an image of ``shape`` before detection (1.0: not at all).

    With a smallest face to find, it maps that face onto the detector's window, whatever
    the image's size: smaller faces are not wanted, and the pyramid levels below the
    window are the costliest part (on 250-px photos, 48-px faces at the 24-px Haar window
    halve detection time). Without one, the image is brought down to ``detect_side``.
    """
    if min_face_size > 0:
        return min(1.0, window / min_face_size)
    return min(1.0, detect_side / max(shape))


def _shrink(gray: np.ndarray, scale: float) -> np.ndarray:
    if scale >= 1:
        return gray
    height, width = gray.shape[:2]
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return cv2.resize(gray, size, interpolation=cv2.INTER_AREA)


# The default detector's proposals: the frontal cascade's first 20 of 25 stages, scanned at a 1.25 step.
PROPOSAL_CASCADE = "haarcascade_frontalface_default.xml"
PROPOSAL_STAGES = 20
PROPOSAL_SCALE_FACTOR = 1.25
# A candidate's score: the verifier's log-odds + SCORE_WINDOWS * ln(windows) + best last-stage sum. Candidates
# scoring ACCEPT_SCORE or more are faces; those scoring RESCAN_SCORE or more are rescanned with the whole cascade;
# the rest are not faces. Chosen on benchmark scenes built with other seeds than bench/ratio.py's
# (docs/benchmarks.md).
SCORE_WINDOWS = 3.0
ACCEPT_SCORE = 14.0
RESCAN_SCORE = 0.0
# The rescan: the candidate's box with RESCAN_MARGIN of its size around it, upsampled RESCAN_UPSAMPLE times so
# that the window moves one pixel at a time even at the smallest face, at a 1.1 step over RESCAN_SIZES times the
# candidate's size, as the `fer` package scans whole images. A box found there is a face when it has more than
# RESCAN_NEIGHBOURS windows (the `fer` package's rule), or more than RESCAN_WEAK_NEIGHBOURS when its candidate
# scored CONFIDENT_SCORE or more or the verifier's log-odds on the box itself are VERIFIED_LOGIT or more; never
# when those log-odds are below REJECTED_LOGIT.
RESCAN_MARGIN = 0.3
RESCAN_UPSAMPLE = 2.5
RESCAN_SIZES = (0.7, 1.5)
RESCAN_SCALE_FACTOR = 1.1
RESCAN_NEIGHBOURS = 5
RESCAN_WEAK_NEIGHBOURS = 3
CONFIDENT_SCORE = 12.0
VERIFIED_LOGIT = 2.0
REJECTED_LOGIT = -3.0


class UnknownDetector(Exception):
    """No detector of that name; the message lists the available ones."""


class HaarDetector:
    """OpenCV's Viola-Jones cascades, shipped inside opencv-python-headless < 5."""

    # Measured on the benchmark archive (bench/pipeline.py: the 1,000 photos and 200 mosaics with known
    # faces), detecting at the scale that maps the smallest face onto the window: histogram
    # equalisation cost recall on mosaics (0.92 against 1.00 without); a scale step of 1.25 with 1
    # neighbour found more faces (recall 0.996 on the photos, 0.998 on mosaics) than 1.2 with 2
    # (0.991, 0.998) in about 0.8x its detection time; 1.25 with 2 lost recall (0.988, 0.990).
    # haar-fine maps the smallest face onto twice the window: OpenCV moves the window one pixel at a time
    # on pyramid levels past a factor of 2 (two pixels below), and with a scale step of 1.2 that finds faces
    # near the smallest size as often as the `fer` package does, at about 2.3x haar's detection time on
    # faces of 48-96 px (README, Face detector).
    def __init__(self, name: str, cascade_file: str, detect_side: int = 640, min_face: int = 20,
                 min_neighbors: int = 1, scale_factor: float = 1.25, window: int = 24, window_multiple: float = 1.0):
        self.name = name
        self.scale_factor = scale_factor
        # The smallest face is mapped onto window * window_multiple pixels (the cascades' window is 24).
        self.window = round(window * window_multiple)
        self.detect_side = detect_side
        self.min_face = min_face
        self.min_neighbors = min_neighbors
        path = Path(cv2.data.haarcascades) / cascade_file
        self.cascade = cv2.CascadeClassifier(str(path))
        if self.cascade.empty():
            raise UnknownDetector(f"cascade {path} is missing from this OpenCV build (OpenCV 5 ships none)")

    def detect(self, gray: np.ndarray, min_face_size: float = 0.0) -> list[Detection]:
        scale = detection_scale(gray.shape, self.detect_side, self.window, min_face_size)
        if min(gray.shape[:2]) * scale < self.window:
            return []  # no face of the wanted size fits (a 1x1 image, a thin strip)
        small = _shrink(gray, scale)
        # Skipping windows smaller than the faces asked for is most of the speed on small photos.
        smallest = max(self.min_face, int(min_face_size * scale))
        boxes, _, weights = self.cascade.detectMultiScale3(
            small,
            scaleFactor=self.scale_factor,
            minNeighbors=self.min_neighbors,
            minSize=(smallest, smallest),
            outputRejectLevels=True,
        )
        return [
            Detection(
                x=int(round(x / scale)), y=int(round(y / scale)), w=int(round(w / scale)), h=int(round(h / scale)),
                score=float(weight),
            )
            for (x, y, w, h), weight in zip(np.asarray(boxes).reshape(-1, 4), np.asarray(weights).reshape(-1))
        ]


Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class _Face:
    """A face the verified detector keeps: its box on the detection copy, its candidate's score, the verifier's
    log-odds on the box itself, and its windows in the rescan (0 for an accepted candidate)."""

    box: Box
    score: float
    log_odds: float
    windows: int = 0


class VerifiedHaarDetector:
    """The frontal cascade cut to its first stages proposes; the project's verifier CNN and the cascade's
    own evidence decide, and the whole cascade, rescanned finely around a candidate, settles the doubtful ones.

    Proposals come from the same coarse scan as ``haar`` (a 1.25 step, two pixels apart on the
    copy where the smallest face meets the 24-px window), but with the cascade's first
    PROPOSAL_STAGES stages only, so a face still yields windows where the full cascade's
    coarse scan has none, and every group of windows is a candidate, however small. A
    candidate's score adds the verifier's log-odds that it is a face
    (``workers.vision.face_verifier``), SCORE_WINDOWS times the log of its window count, and its best
    last-stage sum. A candidate scoring ``accept`` or more is a face. One scoring ``rescan`` or more
    is looked at again: the full cascade scans its surroundings one pixel apart at a 1.1 step, as the
    `fer` package scans whole images, and the verifier scores each box found there. A box with enough
    windows is a face: more than the `fer` package's 5, or fewer where its candidate scored
    CONFIDENT_SCORE or the verifier is sure of the box itself; never where the verifier is sure it
    is not a face. Of boxes on the same face (each one's centre inside the other, sizes within 2x) only
    one is kept: the rescanned face with most windows, unless an accepted candidate there has the
    higher log-odds.
    """

    def __init__(self, name: str, accept: float = ACCEPT_SCORE, rescan: float = RESCAN_SCORE, detect_side: int = 640,
                 min_face: int = 20, verifier_file: str | Path | None = None):
        self.name = name
        self.window = 24
        self.accept = accept
        self.rescan = rescan
        self.detect_side = detect_side
        self.min_face = min_face
        try:
            self.proposals = truncated_cascade(PROPOSAL_CASCADE, PROPOSAL_STAGES)
        except FileNotFoundError as error:
            raise UnknownDetector(str(error)) from None
        self.cascade = cv2.CascadeClassifier(str(Path(cv2.data.haarcascades) / PROPOSAL_CASCADE))
        self.verifier = FaceVerifier(verifier_file or VERIFIER_FILE)

    def detect(self, gray: np.ndarray, min_face_size: float = 0.0) -> list[Detection]:
        scale = detection_scale(gray.shape, self.detect_side, self.window, min_face_size)
        if min(gray.shape[:2]) * scale < self.window:
            return []
        small = _shrink(gray, scale)
        smallest = max(self.min_face, int(min_face_size * scale))
        candidates = group_windows(*raw_windows(self.proposals, small, PROPOSAL_SCALE_FACTOR, smallest))
        if not candidates:
            return []
        boxes = [(c.x, c.y, c.w, c.h) for c in candidates]
        log_odds = self._log_odds(small, boxes)
        scores = log_odds + SCORE_WINDOWS * np.log([c.windows for c in candidates]) + np.array([c.weight for c in candidates])
        accepted = [_Face(box, float(score), float(odds)) for score, odds, box in zip(scores, log_odds, boxes)
                    if score >= self.accept]
        found = [(float(score), windows, box) for score, candidate in zip(scores, boxes)
                 if self.rescan <= score < self.accept for windows, box in self._rescan(small, candidate, smallest)]
        found_odds = self._log_odds(small, [box for _, _, box in found])
        rescanned = [_Face(box, score, float(odds), windows) for (score, windows, box), odds in zip(found, found_odds)
                     if _rescan_keeps(score, windows, float(odds))]
        faces = _one_box_a_face(rescanned, accepted)
        return [
            Detection(x=int(round(x / scale)), y=int(round(y / scale)), w=int(round(w / scale)), h=int(round(h / scale)),
                      score=face.score)
            for face in faces for x, y, w, h in [face.box]
        ]

    def _log_odds(self, small: np.ndarray, boxes: list[Box]) -> np.ndarray:
        """The verifier's log-odds that each box is a face (a box leaving the image: very low)."""
        if not boxes:
            return np.zeros(0)
        probabilities = np.clip(self.verifier.face_probabilities(small, boxes), 1e-6, 1 - 1e-6)
        return np.log(probabilities / (1 - probabilities))

    def _rescan(self, small: np.ndarray, box: Box, smallest: int) -> list[tuple[int, Box]]:
        """The full cascade's faces around ``box`` with more than RESCAN_WEAK_NEIGHBOURS windows: (window count,
        box in ``small``'s pixels)."""
        x, y, w, h = box
        side = max(w, h)
        margin = RESCAN_MARGIN * side
        left, top = max(0, int(x - margin)), max(0, int(y - margin))
        right, bottom = min(small.shape[1], int(x + side + margin + 1)), min(small.shape[0], int(y + side + margin + 1))
        up = RESCAN_UPSAMPLE
        low, high = max(int(up * smallest), int(up * side * RESCAN_SIZES[0])), int(up * side * RESCAN_SIZES[1])
        if up * min(right - left, bottom - top) < low:
            return []
        region = cv2.resize(small[top:bottom, left:right], None, fx=up, fy=up, interpolation=cv2.INTER_LINEAR)
        found, windows = self.cascade.detectMultiScale2(region, scaleFactor=RESCAN_SCALE_FACTOR,
                                                       minNeighbors=RESCAN_WEAK_NEIGHBOURS, minSize=(low, low),
                                                       maxSize=(high, high))
        return [(int(count), (fx / up + left, fy / up + top, fw / up, fh / up))
                for (fx, fy, fw, fh), count in zip(np.asarray(found).reshape(-1, 4), np.asarray(windows).reshape(-1))]


def _one_box_a_face(rescanned: list[_Face], accepted: list[_Face]) -> list[_Face]:
    """One box for each face: rescanned faces with most windows first (one inside a face with more windows is
    dropped, as OpenCV groups them), then accepted candidates; an accepted candidate displaces a rescanned face
    on the same face when the verifier scores it higher."""
    kept: list[_Face] = []
    for face in sorted(rescanned, key=lambda face: -face.windows):
        if not any(_same_face(face.box, other.box) or (_inside(face.box, other.box) and other.windows > max(3, face.windows))
                   for other in kept):
            kept.append(face)
    faces = [face for face in kept
             if not any(_same_face(face.box, other.box) and other.log_odds > face.log_odds for other in accepted)]
    for face in sorted(accepted, key=lambda face: -face.log_odds):
        if not any(_same_face(face.box, other.box) for other in faces):
            faces.append(face)
    return faces


def _rescan_keeps(score: float, windows: int, log_odds: float) -> bool:
    """Is a box found by a rescan a face: ``windows`` of the full cascade there, the verifier's ``log_odds`` on it,
    and ``score`` the candidate's?"""
    if log_odds < REJECTED_LOGIT:
        return False
    return windows > RESCAN_NEIGHBOURS or (windows > RESCAN_WEAK_NEIGHBOURS
                                           and (score >= CONFIDENT_SCORE or log_odds >= VERIFIED_LOGIT))


def _inside(a: Box, b: Box) -> bool:
    """Box ``a`` lies within box ``b`` widened by a fifth of its size (OpenCV's rule for a face inside a face)."""
    dx, dy = b[2] * 0.2, b[3] * 0.2
    return a[0] >= b[0] - dx and a[1] >= b[1] - dy and a[0] + a[2] <= b[0] + b[2] + dx and a[1] + a[3] <= b[1] + b[3] + dy


def _same_face(a: Box, b: Box) -> bool:
    """Each box's centre inside the other, sizes within 2x: two candidates for one face."""
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    return (0.5 <= aw / bw <= 2 and ax <= bx + bw / 2 <= ax + aw and ay <= by + bh / 2 <= ay + ah
            and bx <= ax + aw / 2 <= bx + bw and by <= ay + ah / 2 <= by + bh)


class MtcnnDetector:
    """MTCNN (the `mtcnn` package, weights inside its wheel); optional, install it to use it."""

    def __init__(self, detect_side: int = 640, min_confidence: float = 0.9):
        try:
            from mtcnn import MTCNN  # an optional package: only this detector needs it
        except ImportError:
            raise UnknownDetector("detector 'mtcnn' needs the mtcnn package: pip install mtcnn") from None
        self.name = "mtcnn"
        self.window = 20  # MTCNN's default smallest face
        self.detect_side = detect_side
        self.min_confidence = min_confidence
        self.model = MTCNN(stages="face_detection_only")

    def detect(self, gray: np.ndarray, min_face_size: float = 0.0) -> list[Detection]:
        scale = detection_scale(gray.shape, self.detect_side, self.window, min_face_size)
        small = _shrink(gray, scale)
        found = self.model.detect_faces(np.ascontiguousarray(np.repeat(small[..., None], 3, axis=2)))
        return [
            Detection(*(int(round(v / scale)) for v in face["box"]), score=float(face["confidence"]))
            for face in found
            if face["confidence"] >= self.min_confidence
        ]


DETECTOR_FACTORIES = {
    "haar": lambda: HaarDetector("haar", "haarcascade_frontalface_default.xml"),
    "haar-verified": lambda: VerifiedHaarDetector("haar-verified"),
    "haar-fine": lambda: HaarDetector("haar-fine", "haarcascade_frontalface_default.xml", scale_factor=1.2,
                                      window_multiple=2.0),
    "haar-alt2": lambda: HaarDetector("haar-alt2", "haarcascade_frontalface_alt2.xml", min_neighbors=3, scale_factor=1.2),
    "mtcnn": MtcnnDetector,
}


@cache
def get_detector(name: str = DEFAULT_DETECTOR) -> FaceDetector:
    """One detector per name per process (workers build it after fork, on first use)."""
    problem = detector_problem(name)
    if problem is not None:
        raise UnknownDetector(problem)
    return DETECTOR_FACTORIES[name]()
