"""Annotate a chunk of images: read, detect faces, classify them all in one batch.

Pure computation: no database here. Each image ends `done` (with zero or more faces)
or `failed` with a message a person can act on.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
import numpy as np

from fer_model.files import file_sha256
from workers.classifier import EmotionClassifier
from workers.detection import FaceDetector
from workers.images import ImageReadError, read_image

DECODE_SIDE = 1280


@dataclass
class FaceResult:
    index: int
    x: int
    y: int
    w: int
    h: int
    score: float
    probabilities: list[float] = field(default_factory=list)


@dataclass
class ImageResult:
    image_id: int
    status: str
    error: str | None = None
    width: int | None = None
    height: int | None = None
    size: int | None = None
    mtime: float | None = None
    sha256: str | None = None
    duration_ms: float = 0.0
    faces: list[FaceResult] = field(default_factory=list)


def is_allowed(path: str, allowed_roots: Sequence[str]) -> bool:
    """True when the file, with every symlink resolved, lies below one of the allowed roots."""
    real = os.path.realpath(path)
    for root in allowed_roots:
        root_real = os.path.realpath(root)
        if real == root_real or real.startswith(root_real.rstrip(os.sep) + os.sep):
            return True
    return False


def annotate_images(
    items: Sequence[tuple[int, str]],
    detector: FaceDetector,
    classifier: EmotionClassifier,
    allowed_roots: Sequence[Sequence[str]],
) -> list[ImageResult]:
    """Annotate the chunk's images; a path must lie below a root of every list in ``allowed_roots``."""
    results: list[ImageResult] = []
    crops: list[np.ndarray] = []
    owners: list[FaceResult] = []
    for image_id, path in items:
        started = time.perf_counter()
        result = _detect_one(image_id, path, detector, allowed_roots, crops, owners)
        result.duration_ms = (time.perf_counter() - started) * 1000
        results.append(result)
    started = time.perf_counter()
    probabilities = classifier.predict(crops)
    for face, row in zip(owners, probabilities):
        face.probabilities = [float(p) for p in row]
    share = (time.perf_counter() - started) * 1000 / max(len(results), 1)
    for result in results:
        result.duration_ms += share
    return results


def _detect_one(
    image_id: int,
    path: str,
    detector: FaceDetector,
    allowed_roots: Sequence[Sequence[str]],
    crops: list[np.ndarray],
    owners: list[FaceResult],
) -> ImageResult:
    if not all(is_allowed(path, roots) for roots in allowed_roots):
        return ImageResult(image_id, "failed", error="refused: path is outside the allowed roots")
    try:
        stat = os.stat(path)
        sha256 = file_sha256(path)
        loaded = read_image(path, max_side=DECODE_SIDE)
    except ImageReadError as error:
        return ImageResult(image_id, "failed", error=str(error))
    except FileNotFoundError:
        return ImageResult(image_id, "failed", error="file not found (deleted or moved since it was listed)")
    except OSError as error:
        return ImageResult(image_id, "failed", error=f"cannot read file: {error.strerror or error}")
    result = ImageResult(
        image_id, "done", width=loaded.width, height=loaded.height, size=stat.st_size, mtime=stat.st_mtime, sha256=sha256
    )
    boxes = sorted(detector.detect(loaded.gray), key=lambda d: (d.y, d.x))
    for index, box in enumerate(boxes):
        crop = loaded.gray[max(box.y, 0) : box.y + box.h, max(box.x, 0) : box.x + box.w]
        if crop.size == 0:
            continue
        face = FaceResult(
            index=len(result.faces),
            x=int(round(box.x / loaded.scale)),
            y=int(round(box.y / loaded.scale)),
            w=int(round(box.w / loaded.scale)),
            h=int(round(box.h / loaded.scale)),
            score=box.score,
        )
        result.faces.append(face)
        crops.append(crop)
        owners.append(face)
    return result
