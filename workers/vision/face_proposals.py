"""Candidate face boxes: a Haar cascade cut short, its raw windows grouped.

The full frontal cascade, scanned two pixels apart, misses some faces that a one-pixel scan
finds: no window lands where all 25 stages pass. Its first stages still pass near every face
at the coarse scan, so the cascade cut to those stages proposes candidates cheaply, and a
verifier (``workers.vision.face_verifier``) decides which are faces.
"""

from __future__ import annotations

import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

GROUP_EPS = 0.2  # OpenCV's groupRectangles tolerance: corners within 20% of the smaller box's size


@dataclass(frozen=True)
class Candidate:
    """A group of raw cascade windows: their mean box, how many they are, and the best last-stage sum."""

    x: float
    y: float
    w: float
    h: float
    windows: int
    weight: float


def truncated_cascade(cascade_file: str, stages: int) -> cv2.CascadeClassifier:
    """The cascade ``cascade_file`` (in OpenCV's data folder) with only its first ``stages`` stages."""
    path = Path(cv2.data.haarcascades) / cascade_file
    if not path.is_file():
        raise FileNotFoundError(f"cascade {path} is missing from this OpenCV build (OpenCV 5 ships none)")
    root = ElementTree.parse(path).getroot()
    cascade = root.find("cascade")
    stage_list = cascade.find("stages") if cascade is not None else None
    if cascade is None or stage_list is None or len(stage_list) < stages:
        raise ValueError(f"{path} has fewer than {stages} stages")
    for stage in list(stage_list)[stages:]:
        stage_list.remove(stage)
    cascade.find("stageNum").text = str(stages)
    text = '<?xml version="1.0"?>\n' + ElementTree.tostring(root, encoding="unicode")
    storage = cv2.FileStorage(text, cv2.FILE_STORAGE_READ | cv2.FILE_STORAGE_MEMORY)
    classifier = cv2.CascadeClassifier()
    if not classifier.read(storage.getNode("cascade")):
        raise ValueError(f"OpenCV could not read the first {stages} stages of {path}")
    return classifier


def raw_windows(cascade: cv2.CascadeClassifier, gray: np.ndarray, scale_factor: float,
                smallest: int) -> tuple[np.ndarray, np.ndarray]:
    """Every window that passes all of ``cascade``'s stages, (N, 4) boxes and (N,) last-stage sums, ungrouped."""
    boxes, _, weights = cascade.detectMultiScale3(
        gray, scaleFactor=scale_factor, minNeighbors=0, minSize=(smallest, smallest), outputRejectLevels=True
    )
    return np.asarray(boxes, np.float64).reshape(-1, 4), np.asarray(weights, np.float64).reshape(-1)


def group_windows(boxes: np.ndarray, weights: np.ndarray, eps: float = GROUP_EPS) -> list[Candidate]:
    """Windows grouped as OpenCV's groupRectangles groups them (all four sides within ``eps`` of the smaller
    box's size, transitively), every group kept, however small."""
    labels = _labels(boxes, eps)
    candidates = []
    for label in np.unique(labels):
        members = labels == label
        mean = boxes[members].mean(axis=0)
        candidates.append(Candidate(*(float(v) for v in mean), windows=int(members.sum()),
                                    weight=float(weights[members].max())))
    return candidates


def _labels(boxes: np.ndarray, eps: float = GROUP_EPS) -> np.ndarray:
    """A group label for each window: the smallest index among the windows it is joined to."""
    if len(boxes) == 0:
        return np.zeros(0, np.int64)
    x, y, w, h = boxes.T
    delta = eps * (np.minimum.outer(w, w) + np.minimum.outer(h, h)) / 2
    similar = ((np.abs(np.subtract.outer(x, x)) <= delta) & (np.abs(np.subtract.outer(y, y)) <= delta)
               & (np.abs(np.subtract.outer(x + w, x + w)) <= delta) & (np.abs(np.subtract.outer(y + h, y + h)) <= delta))
    labels = np.arange(len(boxes))
    while True:  # each window takes the smallest label among its similar ones until nothing changes
        spread = np.where(similar, labels[np.newaxis, :], len(boxes)).min(axis=1)
        if np.array_equal(spread, labels):
            return labels
        labels = spread[spread]
