"""Names shared by the ONNX export and the workers that load its files (no Keras import here)."""

from __future__ import annotations

from pathlib import Path

INPUT = "faces"  # (N, 48, 48, 1) uint8
OUTPUT = "probabilities"  # (N, 7) float32, as the Keras model serves them
SOURCE_SHA256 = "keras_sha256"  # metadata: the sha256 of the .keras file the graph was exported from


class UnsupportedModel(Exception):
    """The model has a layer or structure the ONNX export does not handle; it serves through Keras."""


def onnx_path_for(keras_path: str | Path) -> Path:
    """Where a model's ONNX graph lives: beside the `.keras` file, with the same stem."""
    return Path(keras_path).with_suffix(".onnx")
