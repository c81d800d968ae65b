"""Annotate a chunk of images: read, detect faces, classify them all in one batch.

Pure computation: no database here. Each image ends `done` (with zero or more faces)
or `failed` with a message a person can act on.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np
from PIL import Image

from db.records import FaceResult, ImageResult
from fer_model.faces import stack_faces, to_face_array
from fer_model.files import file_sha256, under_roots
from workers.chunks.stages import StageSeconds
from workers.serving.classifier import EmotionClassifier
from workers.vision.cropping import face_crop
from workers.vision.detection import FaceDetector
from workers.vision.images import ImageReadError, LoadedImage, read_image, upright_size
from workers.vision.min_face import MIN_FACE_SIZE, MinFace, min_face_pixels

# Large JPEGs are decoded reduced: to no less than DECODE_SIDE pixels on the longer side, and
# never so small that a face of the smallest size asked for drops below a detector's 20-px window.
DECODE_SIDE = 1280
DETECTOR_WINDOW = 20


def _image_size(path: str | os.PathLike) -> tuple[int, int]:
    """The upright size from the header alone; (0, 0) when unreadable (decoding then reports why)."""
    try:
        with Image.open(path) as image:
            return upright_size(image)
    except Exception:  # noqa: BLE001 - read_image names the problem
        return 0, 0


def read_for_detection(path: str | os.PathLike, min_face: int = MIN_FACE_SIZE, window: float = DETECTOR_WINDOW) -> LoadedImage:
    """Decode as small as detection allows: faces of ``min_face`` pixels keep at least ``window`` pixels."""
    return read_image(path, max_side=DECODE_SIDE, min_scale=min(1.0, window / min_face))


@dataclass(frozen=True)
class PathPolicy:
    """Which files a worker may read.

    By default a file, every symbolic link resolved, must lie below the job's roots, and below
    the worker's FER_ALLOWED_ROOTS when it sets them. With ``follow_symlinks`` the file's own
    path must lie below the job's roots and a link may point anywhere FER_ALLOWED_ROOTS allows
    (anywhere, when the worker sets none), as `find -L` and `rsync -L` follow links.
    """

    job_roots: tuple[str, ...]
    worker_roots: tuple[str, ...] = ()
    follow_symlinks: bool = False

    # The roots are resolved once per policy, not once per file.
    @cached_property
    def _real_job_roots(self) -> list[str]:
        return [os.path.realpath(root) for root in self.job_roots]

    @cached_property
    def _real_worker_roots(self) -> list[str]:
        return [os.path.realpath(root) for root in self.worker_roots]

    @cached_property
    def _absolute_job_roots(self) -> list[str]:
        return [os.path.abspath(root) for root in self.job_roots]

    def refusal(self, path: str) -> str | None:
        """Why ``path`` may not be read (one line), or None when it may."""
        real = os.path.realpath(path)
        worker_ok = not self.worker_roots or under_roots(real, self._real_worker_roots)
        if self.follow_symlinks:
            if not under_roots(os.path.abspath(path), self._absolute_job_roots):
                return "refused: path is outside the job's folders"
            if not worker_ok:
                return f"refused: symbolic link to {real}, outside the worker's FER_ALLOWED_ROOTS"
            return None
        if under_roots(real, self._real_job_roots) and worker_ok:
            return None
        if real != os.path.abspath(path):
            return (f"refused: symbolic link to {real}, outside the allowed roots (links are not followed out of the "
                    f"folders given; pass --follow-symlinks to follow them, within the worker's FER_ALLOWED_ROOTS)")
        return "refused: path is outside the allowed roots"


@dataclass
class DetectedImages:
    """A chunk after detection, before classification: what a detection process hands to the classifier.

    ``faces`` holds every face crop as the model takes it, (N, 48, 48, 1) uint8; ``owners``
    says which result and face each row belongs to.
    """

    results: list[ImageResult]
    faces: np.ndarray
    owners: list[tuple[int, int]]


def detect_images(
    items: Sequence[tuple[int, str]],
    detector: FaceDetector,
    policy: PathPolicy,
    seconds: StageSeconds | None = None,
    min_face: MinFace = MIN_FACE_SIZE,
    digests: dict[int, str] | None = None,
) -> DetectedImages:
    """Read and detect the chunk's images (no TensorFlow); ``policy`` says which paths may be read.

    ``digests`` holds content hashes already computed, by image id.
    """
    digests = digests or {}
    seconds = seconds if seconds is not None else StageSeconds()
    results: list[ImageResult] = []
    crops: list[np.ndarray] = []
    owners: list[tuple[int, int]] = []
    for image_id, path in items:
        started = time.perf_counter()
        result = _detect_one(image_id, path, detector, policy, crops, seconds, min_face, digests.get(image_id))
        owners.extend((len(results), face.index) for face in result.faces)
        result.duration_ms = (time.perf_counter() - started) * 1000
        results.append(result)
    return DetectedImages(results, stack_faces(crops), owners)


def classify_detected(chunks: Sequence[DetectedImages], classifier: EmotionClassifier,
                      seconds: StageSeconds | None = None) -> None:
    """Fill in the faces' probabilities of one or more detected chunks, all in one batched model call."""
    seconds = seconds if seconds is not None else StageSeconds()
    started = time.perf_counter()
    with seconds.timing("classify"):
        batch = [chunk.faces for chunk in chunks if len(chunk.faces)]
        probabilities = classifier.predict_faces(np.concatenate(batch)) if batch else np.zeros((0, 0))
    rows = iter(probabilities)
    for chunk in chunks:
        for result_index, face_index in chunk.owners:
            chunk.results[result_index].faces[face_index].classify([float(p) for p in next(rows)])
    images = sum(len(chunk.results) for chunk in chunks)
    share = (time.perf_counter() - started) * 1000 / max(images, 1)
    for chunk in chunks:
        for result in chunk.results:
            result.duration_ms += share


def annotate_images(
    items: Sequence[tuple[int, str]],
    detector: FaceDetector,
    classifier: EmotionClassifier,
    policy: PathPolicy,
    seconds: StageSeconds | None = None,
    min_face: MinFace = MIN_FACE_SIZE,
    digests: dict[int, str] | None = None,
) -> list[ImageResult]:
    """Annotate the chunk's images; ``policy`` says which paths may be read.

    All faces of the chunk are classified in one batched model call. ``digests`` holds
    content hashes already computed, by image id.
    """
    seconds = seconds if seconds is not None else StageSeconds()
    detected = detect_images(items, detector, policy, seconds, min_face, digests)
    classify_detected([detected], classifier, seconds)
    return detected.results


def _detect_one(
    image_id: int,
    path: str,
    detector: FaceDetector,
    policy: PathPolicy,
    crops: list[np.ndarray],
    seconds: StageSeconds,
    min_face: MinFace,
    digest: str | None = None,
) -> ImageResult:
    refusal = policy.refusal(path)
    if refusal is not None:
        return ImageResult(image_id, "failed", error=refusal)
    try:
        stat = os.stat(path)
        with seconds.timing("hash"):
            sha256 = digest or file_sha256(path)
        with seconds.timing("decode"):
            pixels = min_face_pixels(min_face, *_image_size(path)) if isinstance(min_face, str) else min_face
            loaded = read_for_detection(path, pixels, detector.window)
    except ImageReadError as error:
        if not error.content:
            return ImageResult(image_id, "failed", error=str(error))
        # Read, and bad: its size, time and hash let an incremental run tell that it has not changed since.
        return ImageResult(image_id, "failed", error=str(error), size=stat.st_size, mtime=stat.st_mtime, sha256=sha256)
    except FileNotFoundError:
        return ImageResult(image_id, "failed", error="file not found (deleted or moved since it was listed)")
    except OSError as error:
        return ImageResult(image_id, "failed", error=f"cannot read file: {error.strerror or error}")
    result = ImageResult(
        image_id, "done", width=loaded.width, height=loaded.height, size=stat.st_size, mtime=stat.st_mtime, sha256=sha256,
        taken_at=loaded.taken_at,
    )
    with seconds.timing("detect"):
        boxes = sorted(detector.detect(loaded.gray, pixels * loaded.scale), key=lambda d: (d.y, d.x))
    for index, box in enumerate(boxes):
        if box.w <= 0 or box.h <= 0:
            continue
        crop = face_crop(loaded.gray, box.x, box.y, box.w, box.h)
        face = FaceResult(
            index=len(result.faces),
            x=int(round(box.x / loaded.scale)),
            y=int(round(box.y / loaded.scale)),
            w=int(round(box.w / loaded.scale)),
            h=int(round(box.h / loaded.scale)),
            score=box.score,
        )
        result.faces.append(face)
        crops.append(to_face_array(crop))
    return result
