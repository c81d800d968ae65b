"""A model's int8 graph: its ONNX graph with weights and activations quantized to int8.

On CPUs with int8 dot-product instructions (AVX-512 VNNI, AMX) ONNX Runtime runs the int8
graph of these networks about 2.5 times as fast as the float one, and it labels nearly every
face the same. It is made once per model (``fer model quantize``), checked on PublicTest, and
served under its own name (``seed-deep-int8``), so that its labels are never recorded as the
float model's.

Static quantization in ONNX Runtime's QDQ format: per-channel int8 weights for convolutions
and dense layers, int8 activations inside the network whose ranges are read off FER2013
Training faces (their minimum and maximum: ``MinMax`` calibration). The graph keeps the float graph's metadata, so
it names the `.keras` file it was made from.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from fer_model.files import atomic_path, file_sha256
from fer_model.model_card import CARD_JSON, read_card, write_card
from fer_model.registry import ModelNotFound, ModelRef
from fer_model.served_graph import (
    INPUT, SOURCE_SHA256, UnsupportedModel, cpu_session, graph_source, int8_path_for, onnx_path_for,
)

if TYPE_CHECKING:
    from onnxruntime import InferenceSession

# Only the network's own operations run in int8. Preprocessing, softmax, flip and ensemble averaging and the
# temperature stay in float, and so does every dense layer's output: the probabilities keep their full resolution
# (quantized, they come in steps of 1/255, and small ones become 0).
NETWORK_OPS = ("Conv", "Gemm", "MatMul", "Relu", "MaxPool", "Flatten", "GlobalAveragePool", "Transpose")
CALIBRATION_FACES = 512
CALIBRATION_METHOD = "MinMax"
CALIBRATION_SEED = 0
_CALIBRATION_BATCH = 64


def calibration_faces(train_images: np.ndarray, count: int = CALIBRATION_FACES, seed: int = CALIBRATION_SEED) -> np.ndarray:
    """``count`` Training faces drawn without replacement, (count, 48, 48, 1) uint8."""
    rng = np.random.default_rng(seed)
    chosen = rng.choice(len(train_images), size=min(count, len(train_images)), replace=False)
    return np.ascontiguousarray(train_images[np.sort(chosen)]).reshape(-1, 48, 48, 1).astype(np.uint8)


def quantize_model(ref: ModelRef, faces: np.ndarray) -> Path:
    """Write the int8 graph of ``ref``'s model beside it (atomically) from its float graph, its activation ranges
    read off ``faces``; returns the graph's path."""
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static

    source_sha256 = file_sha256(ref.path)
    float_graph = _float_graph(ref, source_sha256)
    _forget_int8(ref)  # the card's figures are for the graph about to be replaced

    class Faces(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter([{INPUT: faces[i : i + _CALIBRATION_BATCH]} for i in range(0, len(faces), _CALIBRATION_BATCH)])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.batches, None)

    target = int8_path_for(ref.path)
    with tempfile.TemporaryDirectory() as folder:
        source, written = Path(folder) / "float.onnx", Path(folder) / "int8.onnx"
        source.write_bytes(float_graph)
        root = logging.getLogger()
        level = root.level
        root.setLevel(logging.ERROR)  # the quantizer logs advice on the root logger at every call
        try:
            quantize_static(
                str(source), str(written), Faces(), quant_format=QuantFormat.QDQ, per_channel=True,
                activation_type=QuantType.QInt8, weight_type=QuantType.QInt8, op_types_to_quantize=list(NETWORK_OPS),
                calibrate_method=getattr(CalibrationMethod, CALIBRATION_METHOD),
                extra_options={"OpTypesToExcludeOutputQuantization": ["Gemm", "MatMul"]},
            )
        finally:
            root.setLevel(level)
        graph = onnx.load_model(written)
    del graph.metadata_props[:]
    onnx.helper.set_model_props(graph, {SOURCE_SHA256: source_sha256})
    with atomic_path(target) as temporary:
        temporary.write_bytes(graph.SerializeToString())
    return target


def _float_graph(ref: ModelRef, source_sha256: str) -> bytes:
    """The model's float ONNX graph: the saved one when it was exported from this version of the file, else one
    exported now, in memory (the `.keras` file is never written: saving it again would change its hash)."""
    saved = onnx_path_for(ref.path)
    if saved.is_file():
        try:
            if graph_source(cpu_session(str(saved))) == source_sha256:
                return saved.read_bytes()
        except Exception:  # a damaged graph file: export from the .keras file instead
            pass
    # Keras loads only when the graph must be exported again.
    from fer_model.onnx_export import export_onnx
    from fer_model.registry import load_model

    try:
        return export_onnx(load_model(ref), source_sha256=source_sha256).SerializeToString()
    except UnsupportedModel as error:
        raise ModelNotFound(f"{ref.path}: the ONNX export does not handle this model ({error}), so it has no int8 "
                            "graph") from None


def _card_of(ref: ModelRef):
    """The card that describes ``ref``'s file: the one beside it, when it names that file."""
    if not (ref.folder / CARD_JSON).is_file():
        return None
    card = read_card(ref.folder)
    return card if card.model_file == ref.path.name else None


def _forget_int8(ref: ModelRef) -> None:
    card = _card_of(ref)
    if card is not None and card.int8:
        card.int8 = {}
        write_card(ref.folder, card, Path(ref.path))


def int8_session(model_file: Path, threads: int = 1) -> InferenceSession:
    """A session on the int8 graph beside ``model_file``; ModelNotFound when it is missing, damaged, or was made
    from another version of the file (it cannot be made again at load time: that needs Training faces)."""
    graph = int8_path_for(model_file)
    if not graph.is_file():
        raise ModelNotFound(f"{model_file.parent.name} has no int8 graph ({graph} is missing): make one with fer model "
                            "quantize")
    try:
        session = cpu_session(str(graph), threads)
        source = graph_source(session)
    except Exception as error:  # ONNX Runtime raises its own types for files it cannot read
        raise ModelNotFound(f"{graph}: not a readable ONNX graph ({type(error).__name__}: {error})") from error
    if source != file_sha256(model_file):
        raise ModelNotFound(f"{graph} was made from another version of {model_file.name}: make it again with fer "
                            "model quantize")
    return session


def graph_probabilities(session: InferenceSession, faces: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """(N, 7) probabilities of a served graph's session for (N, H, W[, 1]) uint8 faces of the size the graph takes."""
    batch = np.ascontiguousarray(faces, dtype=np.uint8).reshape(len(faces), *faces.shape[1:3], 1)
    outputs = [session.run(None, {INPUT: batch[i : i + batch_size]})[0] for i in range(0, len(batch), batch_size)]
    return np.concatenate(outputs).astype(np.float64) if outputs else np.zeros((0, 7))


def record_int8(ref: ModelRef, figures: dict[str, Any], command: str, faces: int) -> None:
    """Write the int8 graph's entry into the model's card (card.json and card.md); nothing for a file that has no card
    of its own (a run's best.keras beside the card of its model.keras)."""
    import datetime as dt

    card = _card_of(ref)
    if card is None:
        return
    graph = int8_path_for(ref.path)
    card.int8 = {
        "graph_file": graph.name,
        "graph_sha256": file_sha256(graph),
        "calibration_faces": faces,
        "calibration_method": CALIBRATION_METHOD,
        "command": command,
        "date": dt.date.today().isoformat(),
        "metrics": figures,
    }
    write_card(ref.folder, card, Path(ref.path))


def int8_figures(ref: ModelRef, images: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    """The int8 graph's figures on labelled faces, and how often it gives the float graph's label."""
    # Keras and scikit-learn load only where figures are computed, not in the workers that serve the graph.
    from fer_model.calibration import expected_calibration_error
    from fer_model.metrics import compute_metrics

    float_probabilities = graph_probabilities(cpu_session(_float_graph(ref, file_sha256(ref.path))), images)
    int8_probabilities = graph_probabilities(int8_session(ref.path), images)
    metrics = compute_metrics(labels, int8_probabilities, "val")
    return {
        "n": int(len(labels)),
        "accuracy": metrics["accuracy"],
        "macro_f1": metrics["macro_f1"],
        "weighted_f1": metrics["weighted_f1"],
        "ece": expected_calibration_error(int8_probabilities, labels),
        "agreement": float((int8_probabilities.argmax(1) == float_probabilities.argmax(1)).mean()),
        "float_accuracy": float((float_probabilities.argmax(1) == labels).mean()),
    }
