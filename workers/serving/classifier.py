"""The emotion model as the workers use it: loaded once per process, batched predictions."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING

from db.records import ModelIdentity
from fer_model.classes import CLASSES
from fer_model.files import file_sha256
from fer_model.registry import load_model, resolve_model
from fer_model.served_graph import INT8
from workers.serving.devices import Device, batch_size_for, configure_devices, describe, visible_gpus

if TYPE_CHECKING:
    import numpy as np

logger = logging.getLogger("fer.worker")


def _identity_of(ref) -> ModelIdentity:
    """An int8 model is recorded by its graph's hash, and with its own PublicTest figures, apart from the float model."""
    if ref.precision == INT8:  # the graph itself is hashed (a few MB): a card can lag behind its file
        digest = file_sha256(ref.int8_graph)
        int8 = ref.card.int8 if ref.card else {}
        metrics = {"val": int8["metrics"]} if int8.get("graph_sha256") == digest and int8.get("metrics") else {}
        return ModelIdentity(name=ref.name, version=digest[:12], file_sha256=digest, metrics=metrics)
    digest = ref.card.model_sha256 if ref.card and ref.card.model_sha256 else file_sha256(ref.path)
    return ModelIdentity(name=ref.name, version=digest[:12], file_sha256=digest, metrics=(ref.card.metrics if ref.card else {}))


@cache
def model_identity(model_name: str) -> ModelIdentity:
    """The name and version a model would be recorded under, without loading it (no TensorFlow)."""
    return _identity_of(resolve_model(model_name))


BACKENDS = ("auto", "keras", "onnx")


def requested_backend() -> str:
    """``FER_CLASSIFIER_BACKEND`` as one of BACKENDS (``auto`` when unset); ValueError for anything else."""
    requested = os.environ.get("FER_CLASSIFIER_BACKEND", "auto").strip().lower() or "auto"
    if requested not in BACKENDS:
        raise ValueError(f"FER_CLASSIFIER_BACKEND is {requested!r}: use one of {', '.join(BACKENDS)}")
    return requested


def backend_for() -> str:
    """The classifier backend for this machine.

    ``FER_CLASSIFIER_BACKEND=keras|onnx`` forces one. Otherwise (``auto``) machines with an
    NVIDIA GPU classify on Keras (TensorFlow on the GPU) and others on ONNX Runtime, which
    starts without importing TensorFlow (about 5 s of CPU a process) and runs these networks
    faster on a CPU.
    """
    forced = requested_backend()
    if forced != "auto":
        return forced
    return "keras" if visible_gpus() else "onnx"


@dataclass(frozen=True)
class ServingPlan:
    """Where this machine's workers classify, worked out without loading a model."""

    backend: str  # "keras" or "onnx"
    device: str  # "CPU", or the GPUs as `describe` names them
    batch_size: int  # faces per model call


def serving_plan() -> ServingPlan:
    """The backend (`backend_for`), the device and the batch size a worker's classifier will use here; ValueError
    for an unknown FER_CLASSIFIER_BACKEND."""
    backend = backend_for()
    gpus = visible_gpus() if backend == "keras" else []
    return ServingPlan(backend, describe(gpus) if gpus else "CPU", batch_size_for(backend, gpus))


class EmotionClassifier:
    """A model ready to classify faces, on Keras (TensorFlow) or on ONNX Runtime.

    The ONNX backend serves plain convolutional models without importing TensorFlow
    (predictions within 1e-4 of Keras); a model it cannot translate serves through Keras,
    unless ``FER_CLASSIFIER_BACKEND=onnx`` demands ONNX. On Keras the model serves with its
    batch normalisations folded into the layers before them (fer_model.inference): the same
    probabilities, fewer operations a face.
    """

    def __init__(self, model_name: str, backend: str = "keras"):
        ref = resolve_model(model_name)
        self.identity = model_identity(model_name)
        self.model = None
        if ref.precision == INT8:
            # The int8 graph exists only for ONNX Runtime on the CPU: every worker serves it there, so that one
            # model name always means the same computation.
            if requested_backend() == "keras":
                raise ValueError(f"model {model_name} is served by ONNX Runtime only: unset FER_CLASSIFIER_BACKEND=keras "
                                 f"or use its float model")
            # NumPy, OpenCV and ONNX Runtime load only where a model is served (as below).
            from workers.serving.onnx_classifier import OnnxEmotionModel

            self.model = OnnxEmotionModel(ref.path, precision=INT8)
            self.backend, self.devices = "onnx", [Device("CPU", "CPU")]
        elif backend == "onnx":
            # NumPy, OpenCV and ONNX Runtime load only where a model is served (recording a run needs its identity).
            from workers.serving.onnx_classifier import OnnxEmotionModel, UnsupportedModel

            try:
                self.model = OnnxEmotionModel(ref.path)
                self.backend, self.devices = "onnx", [Device("CPU", "CPU")]
            except UnsupportedModel as reason:
                if requested_backend() == "onnx":
                    raise
                logger.info("model %s served by Keras: %s", self.identity.name, reason)
        if self.model is None:
            from fer_model.inference import folded_for_inference  # Keras loads only where it serves the model

            self.devices = configure_devices()
            self.model = folded_for_inference(load_model(ref))
            self.backend = "keras"
        self.batch_size = batch_size_for(self.backend, self.devices)
        logger.info("model %s %s on %s (%s), batches of %d faces", self.identity.name, self.identity.version,
                    describe(self.devices), self.backend, self.batch_size)

    def predict(self, faces: list[np.ndarray]) -> np.ndarray:
        """(N, 7) probabilities for gray face crops of any size, in CLASSES order."""
        import numpy as np  # as in predict_faces

        if not faces:
            return np.zeros((0, len(CLASSES)), dtype=np.float32)
        from fer_model.faces import stack_faces  # OpenCV loads only where faces are classified

        return self.predict_faces(stack_faces(faces))

    def predict_faces(self, faces: np.ndarray) -> np.ndarray:
        """(N, 7) probabilities for an (N, 48, 48, 1) uint8 batch."""
        import numpy as np  # here, not at import: recording a run needs the model's identity, not numpy

        size = self.batch_size
        if self.backend == "onnx":
            return self.model.predict_faces(faces, size)
        batch = faces.astype(np.float32)
        # predict_on_batch runs the backend's compiled predict step: about 1.3x an eager call.
        outputs = [np.asarray(self.model.predict_on_batch(batch[i : i + size])) for i in range(0, len(batch), size)]
        return np.concatenate(outputs).astype(np.float64)


@cache
def get_classifier(model_name: str, backend: str | None = None) -> EmotionClassifier:
    """One loaded model per name per process: workers load it lazily, after fork.

    ``backend`` None: as `backend_for` decides.
    """
    return EmotionClassifier(model_name, backend or backend_for())
