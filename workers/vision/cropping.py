"""Cut a detected face out of a photo the way FER2013 framed its faces.

A detector's box and a FER2013 face differ in framing: FER2013's 48x48 faces are square
and show a little more around the features than a Haar box does. The classifier learned
that framing, so the crop squares the box up around its centre and widens it by
``margin`` of its side on every side; the part that falls outside the photo is filled by
repeating the edge pixels, so faces at the border keep their framing.
"""

from __future__ import annotations

import cv2
import numpy as np

# Chosen with bench/consistency.py (PublicTest faces pasted into photos, through detection):
# the margin at which labels through the pipeline come closest to classifying the original crops.
FACE_MARGIN = 0.0


def face_crop(gray: np.ndarray, x: int, y: int, w: int, h: int, margin: float = FACE_MARGIN) -> np.ndarray:
    """The square crop of side ``max(w, h) * (1 + 2 * margin)`` centred on the box (edges replicated)."""
    side = max(int(round(max(w, h) * (1 + 2 * margin))), 1)
    left = int(round(x + w / 2 - side / 2))
    top = int(round(y + h / 2 - side / 2))
    height, width = gray.shape[:2]
    pad = max(0, -left, -top, left + side - width, top + side - height)
    if pad:
        gray = cv2.copyMakeBorder(gray, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
        left, top = left + pad, top + pad
    return gray[top : top + side, left : left + side]
