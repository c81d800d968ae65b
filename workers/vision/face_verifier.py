"""The face verifier: a small CNN, trained by this project, that scores candidate boxes as faces.

Its `.keras` file (``fer_model/verifiers/face-verifier``, trained by
``python -m workers.vision.verifier_training``) is served by the same ONNX Runtime translation as
the emotion model: no TensorFlow in the detection processes, nothing downloaded.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from workers.serving.onnx_classifier import OnnxEmotionModel

CROP = 24  # the verifier's input: each candidate box at the cascade's window size
VERIFIER_FILE = Path(__file__).resolve().parents[2] / "fer_model" / "verifiers" / "face-verifier" / "model.keras"


def crop_box(gray: np.ndarray, x: float, y: float, w: float, h: float) -> np.ndarray | None:
    """The box cut from ``gray`` and resized to CROP x CROP (area averaging); None when it leaves the image."""
    left, top, right, bottom = int(round(x)), int(round(y)), int(round(x + w)), int(round(y + h))
    if left < 0 or top < 0 or right > gray.shape[1] or bottom > gray.shape[0] or right - left < 2 or bottom - top < 2:
        return None
    return cv2.resize(gray[top:bottom, left:right], (CROP, CROP), interpolation=cv2.INTER_AREA)


class FaceVerifier:
    """Face probabilities for boxes in a gray image."""

    def __init__(self, model_file: str | Path = VERIFIER_FILE):
        self.model = OnnxEmotionModel(model_file, threads=1)

    def face_probabilities(self, gray: np.ndarray, boxes: Sequence[tuple[float, float, float, float]]) -> np.ndarray:
        """One probability per box; 0 for a box that leaves the image."""
        probabilities = np.zeros(len(boxes))
        crops, rows = [], []
        for row, box in enumerate(boxes):
            crop = crop_box(gray, *box)
            if crop is not None:
                crops.append(crop)
                rows.append(row)
        if crops:
            probabilities[rows] = self.model.predict_faces(np.stack(crops)[..., np.newaxis], batch_size=256)[:, 1]
        return probabilities
