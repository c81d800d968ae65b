"""Face crops as every model takes them: 48x48 single-channel uint8 (no TensorFlow here).

Detection processes prepare crops with these functions without importing Keras; the
model's own layers do everything after (resizing, normalisation).
"""

from __future__ import annotations

import cv2
import numpy as np

from fer_model.classes import FACE_SIZE


def to_face_array(image: np.ndarray, size: int = FACE_SIZE) -> np.ndarray:
    """Convert an image (gray, BGR or BGRA; any size; uint8 or uint16) to a size x size uint8 gray face."""
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim == 3:
        code = cv2.COLOR_BGRA2GRAY if image.shape[2] == 4 else cv2.COLOR_BGR2GRAY
        image = cv2.cvtColor(image, code)
    if image.ndim != 2:
        raise ValueError(f"expected a 2-D or 3-D image array, got shape {image.shape}")
    if image.dtype == np.uint16:
        image = (image >> 8).astype(np.uint8)
    elif image.dtype != np.uint8:
        image = np.clip(image, 0, 255).astype(np.uint8)
    if image.shape != (size, size):
        shrinking = image.shape[0] > size or image.shape[1] > size
        image = cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)
    return image


def stack_faces(faces: list[np.ndarray]) -> np.ndarray:
    """Stack prepared faces into the (N, 48, 48, 1) uint8 batch every model takes."""
    if not faces:
        return np.zeros((0, FACE_SIZE, FACE_SIZE, 1), dtype=np.uint8)
    return np.stack([to_face_array(f) for f in faces])[..., np.newaxis]


def as_model_batch(faces: np.ndarray) -> np.ndarray:
    """(N, 48, 48) or (N, 48, 48, 1) uint8 faces as the float32 (N, 48, 48, 1) batch every model is called with."""
    if faces.ndim == 3:
        faces = faces[..., np.newaxis]
    return faces.astype(np.float32)
