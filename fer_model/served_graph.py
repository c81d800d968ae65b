"""Names shared by the ONNX export and the workers that load its files (no Keras import here)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from onnxruntime import InferenceSession

INPUT = "faces"  # (N, 48, 48, 1) uint8
OUTPUT = "probabilities"  # (N, 7) float32, as the Keras model serves them
SOURCE_SHA256 = "keras_sha256"  # metadata: the sha256 of the .keras file the graph was exported from
INT8 = "int8"  # the precision of a quantized graph, and the suffix of the model name that serves it ("seed-deep-int8")


class UnsupportedModel(Exception):
    """The model has a layer or structure the ONNX export does not handle; it serves through Keras."""


def onnx_path_for(keras_path: str | Path) -> Path:
    """Where a model's ONNX graph lives: beside the `.keras` file, with the same stem."""
    return Path(keras_path).with_suffix(".onnx")


def int8_path_for(keras_path: str | Path) -> Path:
    """Where a model's int8 graph lives (``fer model quantize``): beside the `.keras` file, ``model.int8.onnx``."""
    return Path(keras_path).with_suffix(f".{INT8}.onnx")


def graph_source(session: InferenceSession) -> str | None:
    """The sha256 of the `.keras` file a graph was made from, read from its metadata through ONNX Runtime (importing
    the ``onnx`` package would cost a worker process more than half a second at start)."""
    return session.get_modelmeta().custom_metadata_map.get(SOURCE_SHA256)


def cpu_session(graph: bytes | str, threads: int = 1) -> InferenceSession:
    """An ONNX Runtime session on the CPU for a serialised graph or a graph file, quiet but for errors."""
    import onnxruntime  # ONNX Runtime loads only where a session starts

    onnxruntime.set_default_logger_severity(3)  # errors only: no warnings on stderr
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")  # idle between batches, not spinning
    return onnxruntime.InferenceSession(graph, options, providers=["CPUExecutionProvider"])
