"""The emotion model on ONNX Runtime: the graph saved beside the `.keras` file, no TensorFlow import.

Importing TensorFlow and loading a model takes about 5 s of CPU per process, more than
classifying a thousand faces, and on a CPU ONNX Runtime runs these small networks faster than
TensorFlow does. Every model this project saves has its whole served computation exported to
ONNX beside it (`fer_model.onnx_export`: preprocessing, network, flip averaging, ensemble
members, temperature), so this module only feeds faces in and reads probabilities out.

A `.keras` file without a matching graph beside it (none, or one exported from another version
of the file) is exported in memory when it loads, which imports Keras once; a model the export
does not handle raises `UnsupportedModel` and serves through Keras. The int8 graph
(``fer_model.quantization``) serves only when it was made from the same file: it cannot be made
again at load time, so a missing or stale one raises `ModelNotFound`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

from fer_model.files import file_sha256
from fer_model.quantization import graph_probabilities, int8_session
from fer_model.registry import FLOAT32, ModelRef, load_model
from fer_model.served_graph import INT8, UnsupportedModel, cpu_session, graph_source, onnx_path_for
from workers.serving.devices import ONNX_BATCH_SIZE

if TYPE_CHECKING:
    from onnxruntime import InferenceSession

__all__ = ["OnnxEmotionModel", "UnsupportedModel"]


class OnnxEmotionModel:
    """Probabilities for (N, 48, 48, 1) uint8 faces, computed like the Keras model they come from."""

    def __init__(self, model_file: str | Path, threads: int | None = None, precision: str = FLOAT32):
        """``threads``: ONNX Runtime's threads; by default as many as OpenCV may use in this process,
        which is one in worker processes (they scale by processes, one per core). ``precision`` INT8 serves
        the model's int8 graph."""
        threads = threads or max(1, cv2.getNumThreads())
        if precision == INT8:
            self.session = int8_session(Path(model_file), threads)
        else:
            self.session = _session_for(Path(model_file), threads)

    def predict_faces(self, faces: np.ndarray, batch_size: int = ONNX_BATCH_SIZE) -> np.ndarray:
        return graph_probabilities(self.session, faces, batch_size)


def _session_for(model_file: Path, threads: int) -> InferenceSession:
    """A session on the graph saved beside ``model_file`` when it matches the file, else on one exported now.

    The match is read from the graph's metadata through ONNX Runtime itself: importing the ``onnx``
    package would cost each worker process more than half a second at start."""
    saved = onnx_path_for(model_file)
    if saved.is_file() and model_file.is_file():
        try:
            session = cpu_session(str(saved), threads)
            if graph_source(session) == file_sha256(model_file):
                return session
        except Exception:  # a damaged graph file: export from the .keras file instead
            pass
    from fer_model.onnx_export import export_onnx  # Keras loads only for a file without a matching graph

    model = load_model(ModelRef(path=model_file, card=None))  # ModelNotFound for a damaged or foreign file
    try:
        graph = export_onnx(model).SerializeToString()
    except UnsupportedModel:
        raise
    except Exception as error:  # a layout the export did not foresee: Keras serves the file instead
        raise UnsupportedModel(f"export failed ({type(error).__name__}: {error})") from error
    try:
        return cpu_session(graph, threads)
    except Exception as error:  # ONNX Runtime raises its own types for graphs it cannot run
        raise UnsupportedModel(f"ONNX Runtime cannot run the graph ({type(error).__name__}: {error})") from error


