"""The emotion model as the workers use it: loaded once per process, batched predictions."""

from __future__ import annotations

import logging
import os
from functools import cache

import numpy as np

from db.records import ModelIdentity
from fer_model.classes import CLASSES

logger = logging.getLogger("fer.worker")


def _identity_of(ref) -> ModelIdentity:
    from fer_model.files import file_sha256

    digest = ref.card.model_sha256 if ref.card and ref.card.model_sha256 else file_sha256(ref.path)
    return ModelIdentity(name=ref.name, version=digest[:12], file_sha256=digest, metrics=(ref.card.metrics if ref.card else {}))


@cache
def model_identity(model_name: str) -> ModelIdentity:
    """The name and version a model would be recorded under, without loading it (no TensorFlow)."""
    from fer_model.registry import resolve_model

    return _identity_of(resolve_model(model_name))


# Below this many images, `fer annotate` classifies on OpenCV's DNN module: it starts in
# 0.3 s where TensorFlow's import and model load take about 5 s of CPU, but each face costs
# about 2.3 ms of CPU there against 1 ms in TensorFlow, so past roughly 3,500 faces Keras wins.
OPENCV_MAX_IMAGES = 3000


def backend_for(images: int | None) -> str:
    """The classifier backend for a run of ``images`` images (None: a long-lived worker process).

    ``FER_CLASSIFIER_BACKEND=keras|opencv`` forces one. Otherwise short runs on machines
    without an NVIDIA GPU use OpenCV, and everything else Keras (on the GPU when there is one).
    """
    forced = os.environ.get("FER_CLASSIFIER_BACKEND", "auto")
    if forced in ("keras", "opencv"):
        return forced
    from workers.devices import visible_gpus

    if images is not None and images <= OPENCV_MAX_IMAGES and not visible_gpus():
        return "opencv"
    return "keras"


class EmotionClassifier:
    """A model ready to classify faces, on Keras (TensorFlow) or on OpenCV's DNN module.

    The OpenCV backend serves plain convolutional models without importing TensorFlow
    (predictions within 1e-5 of Keras); a model it cannot translate serves through Keras,
    unless ``FER_CLASSIFIER_BACKEND=opencv`` demands OpenCV.
    """

    def __init__(self, model_name: str, backend: str = "keras"):
        from fer_model.registry import load_model, resolve_model
        from workers.devices import Device, batch_size_for, configure_devices, describe

        ref = resolve_model(model_name)
        self.identity = model_identity(model_name)
        self.model = None
        if backend == "opencv":
            from workers.opencv_classifier import BATCH_SIZE as OPENCV_BATCH_SIZE
            from workers.opencv_classifier import OpenCVEmotionModel, UnsupportedModel

            try:
                self.model = OpenCVEmotionModel(ref.path)
                self.backend, self.devices = "opencv", [Device("CPU", "CPU")]
            except UnsupportedModel as reason:
                if os.environ.get("FER_CLASSIFIER_BACKEND") == "opencv":
                    raise
                logger.info("model %s served by Keras: %s", self.identity.name, reason)
        if self.model is None:
            self.devices = configure_devices()
            self.model = load_model(ref)
            self.backend = "keras"
        self.batch_size = batch_size_for(self.devices) if self.backend == "keras" else OPENCV_BATCH_SIZE
        logger.info("model %s %s on %s (%s), batches of %d faces", self.identity.name, self.identity.version,
                    describe(self.devices), self.backend, self.batch_size)

    def predict(self, faces: list[np.ndarray]) -> np.ndarray:
        """(N, 7) probabilities for gray face crops of any size, in CLASSES order."""
        if not faces:
            return np.zeros((0, len(CLASSES)), dtype=np.float32)
        from fer_model.faces import stack_faces

        return self.predict_faces(stack_faces(faces))

    def predict_faces(self, faces: np.ndarray) -> np.ndarray:
        """(N, 7) probabilities for an (N, 48, 48, 1) uint8 batch."""
        size = self.batch_size
        if self.backend == "opencv":
            return self.model.predict_faces(faces, size)
        batch = faces.astype(np.float32)
        # predict_on_batch runs the backend's compiled predict step: about 1.3x an eager call.
        outputs = [np.asarray(self.model.predict_on_batch(batch[i : i + size])) for i in range(0, len(batch), size)]
        return np.concatenate(outputs).astype(np.float64)


@cache
def get_classifier(model_name: str, backend: str | None = None) -> EmotionClassifier:
    """One loaded model per name per process: workers load it lazily, after fork.

    ``backend`` None: as `backend_for` decides for a long-lived process.
    """
    return EmotionClassifier(model_name, backend or backend_for(None))
