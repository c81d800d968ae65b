"""The emotion model as the workers use it: loaded once per process, batched predictions."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from functools import cache

import numpy as np

from fer_model.classes import CLASSES

logger = logging.getLogger("fer.worker")


@dataclass(frozen=True)
class ModelIdentity:
    """What the database records about the model that labelled a face."""

    name: str
    version: str
    file_sha256: str
    metrics: dict


def _identity_of(ref) -> ModelIdentity:
    from fer_model.files import file_sha256

    digest = ref.card.model_sha256 if ref.card and ref.card.model_sha256 else file_sha256(ref.path)
    return ModelIdentity(name=ref.name, version=digest[:12], file_sha256=digest, metrics=(ref.card.metrics if ref.card else {}))


@cache
def model_identity(model_name: str) -> ModelIdentity:
    """The name and version a model would be recorded under, without loading it (no TensorFlow)."""
    from fer_model.registry import resolve_model

    return _identity_of(resolve_model(model_name))


class EmotionClassifier:
    """A model ready to classify faces, on the backend chosen for this machine.

    ``FER_CLASSIFIER_BACKEND``: ``auto`` (default) serves plain convolutional models with
    OpenCV's DNN module on machines without an NVIDIA GPU (no TensorFlow import: about 5 s
    of CPU less per process, predictions within 1e-5 of Keras), and everything else with
    Keras on TensorFlow, on the GPU when there is one; ``keras`` or ``opencv`` forces one.
    """

    def __init__(self, model_name: str):
        from fer_model.registry import load_model, resolve_model
        from workers.devices import Device, batch_size_for, configure_devices, describe, visible_gpus

        ref = resolve_model(model_name)
        self.identity = _identity_of(ref)
        choice = os.environ.get("FER_CLASSIFIER_BACKEND", "auto")
        self.model = None
        if choice == "opencv" or (choice == "auto" and not visible_gpus()):
            from workers.opencv_classifier import OpenCVEmotionModel, UnsupportedModel

            try:
                self.model = OpenCVEmotionModel(ref.path)
                self.backend, self.devices = "opencv", [Device("CPU", "CPU")]
            except UnsupportedModel as reason:
                if choice == "opencv":
                    raise
                logger.info("model %s served by Keras: %s", self.identity.name, reason)
        if self.model is None:
            self.devices = configure_devices()
            self.model = load_model(ref)
            self.backend = "keras"
        self.batch_size = batch_size_for(self.devices)
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
def get_classifier(model_name: str) -> EmotionClassifier:
    """One loaded model per name per process: workers load it lazily, after fork."""
    return EmotionClassifier(model_name)
