"""The emotion model on ONNX Runtime: the same weights, no TensorFlow import.

Importing TensorFlow and loading a model takes about 5 s of CPU per process, more than
classifying a thousand faces, and on a CPU ONNX Runtime runs these small networks faster
than TensorFlow does. For the plain convolutional models this project trains
(convolutions, batch norm, ReLU, max or global average pooling, dense layers, softmax),
the `.keras` file's layers are translated into an ONNX graph in memory, with batch norm
folded into the layer before it. Resizing and per-face min-max scaling run in NumPy
before it, temperature scaling after. A model with any other layer is not translated
(`UnsupportedModel`) and serves through Keras. A flip-averaged model (`fer_model.test_time`:
one network called on each face and its mirror image) runs its network on both in one
batch and averages in NumPy.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

from fer_model.layer_roles import IDENTITY_AT_INFERENCE

if TYPE_CHECKING:
    import h5py
    from onnx import ModelProto, NodeProto, TensorProto
    from onnxruntime import InferenceSession

# Layers that do nothing at inference time.
_INFERENCE_NO_OPS = {"InputLayer", *IDENTITY_AT_INFERENCE}
_PROBABILITY_FLOOR = 1e-7  # as fer_model.calibration.TemperatureScaling clips
# Measured on one thread: about 0.5 ms of CPU a face for the seed net in batches of 16-256, fastest at 64.
BATCH_SIZE = 64
_OPSET = 17
_IR_VERSION = 8  # the ONNX file format that opset 17 came with: readable by every supported ONNX Runtime
_INPUT = "faces"


class UnsupportedModel(Exception):
    """The model has a layer or setting this translation does not handle; serve it through Keras."""


class OnnxEmotionModel:
    """Probabilities for (N, 48, 48, 1) uint8 faces, computed like the Keras model they come from."""

    def __init__(self, model_file: str | Path, threads: int | None = None):
        """``threads``: ONNX Runtime's threads; by default as many as OpenCV may use in this process,
        which is one in worker processes (they scale by processes, one per core)."""
        import h5py  # a Keras dependency, light to import

        from fer_model.registry import ModelNotFound

        try:
            with zipfile.ZipFile(model_file) as archive:
                config = json.loads(archive.read("config.json"))
                weights_file = io.BytesIO(archive.read("model.weights.h5"))
            weights = h5py.File(weights_file, "r")
        except (OSError, KeyError, ValueError, zipfile.BadZipFile) as error:
            raise ModelNotFound(f"{model_file}: not a loadable Keras model ({type(error).__name__}: {error})") from error
        try:
            with weights:
                graph, self.input_size, self.minmax_epsilon, self.temperature, self.flip_averaged = _translate_model(
                    config, weights
                )
            self.session = _session(graph, threads or max(1, cv2.getNumThreads()))
        except UnsupportedModel:
            raise
        except Exception as error:  # a layout this translation did not foresee: Keras serves the file instead
            raise UnsupportedModel(f"translation failed ({type(error).__name__}: {error})") from error

    def predict_faces(self, faces: np.ndarray, batch_size: int = BATCH_SIZE) -> np.ndarray:
        outputs = [self._predict(faces[i : i + batch_size]) for i in range(0, len(faces), batch_size)]
        return np.concatenate(outputs).astype(np.float64) if outputs else np.zeros((0, 7))

    def _predict(self, faces: np.ndarray) -> np.ndarray:
        x = faces.reshape(len(faces), faces.shape[1], faces.shape[2]).astype(np.float32)
        if self.input_size and self.input_size != x.shape[1:]:
            height, width = self.input_size
            x = np.stack([cv2.resize(face, (width, height), interpolation=cv2.INTER_LINEAR) for face in x])
        if self.minmax_epsilon is not None:
            low = x.min(axis=(1, 2), keepdims=True)
            high = x.max(axis=(1, 2), keepdims=True)
            x = (x - low) / np.maximum(high - low, self.minmax_epsilon)
        if self.flip_averaged:
            x = np.concatenate([x, x[:, :, ::-1]])
        probabilities = self.session.run(None, {_INPUT: np.ascontiguousarray(x[:, np.newaxis, :, :])})[0]
        if self.flip_averaged:
            probabilities = (probabilities[: len(faces)] + probabilities[len(faces) :]) / 2
        if self.temperature is not None:
            logits = np.log(np.clip(probabilities, _PROBABILITY_FLOOR, 1.0)) / self.temperature
            logits -= logits.max(axis=1, keepdims=True)
            probabilities = np.exp(logits)
            probabilities /= probabilities.sum(axis=1, keepdims=True)
        return probabilities


def _session(graph: ModelProto, threads: int) -> InferenceSession:
    import onnxruntime

    onnxruntime.set_default_logger_severity(3)  # errors only: no warnings on stderr
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")  # idle between batches, not spinning
    return onnxruntime.InferenceSession(graph.SerializeToString(), options, providers=["CPUExecutionProvider"])


def _flatten_layers(layers: list[dict]) -> list[dict]:
    flat = []
    for layer in layers:
        if layer["class_name"] in ("Sequential", "Functional"):
            flat += _flatten_layers(layer["config"]["layers"])
        else:
            flat.append(layer)
    return flat


def _translate_model(
    config: dict, weights: h5py.Group
) -> tuple[ModelProto, tuple[int, int] | None, float | None, float | None, bool]:
    """`_translate`'s results for the network, plus whether the model averages it over mirror images."""
    layers = config.get("config", {}).get("layers", [])
    classes = [layer["class_name"] for layer in layers]
    if "MirrorFaces" not in classes:
        return (*_translate(config, weights), False)
    if classes[:4] != ["InputLayer", "MirrorFaces", "Functional", "Average"] or classes[4:] not in ([], ["TemperatureScaling"]):
        raise UnsupportedModel("mirror averaging other than of one network")
    graph, input_size, minmax, inner_temperature = _translate(layers[2], weights["layers"]["functional"])
    if inner_temperature is not None:
        raise UnsupportedModel("a temperature inside the averaged network")
    temperature = float(layers[4]["config"]["temperature"]) if len(layers) == 5 else None
    return graph, input_size, minmax, temperature, True



class _Graph:
    """An ONNX graph built one operation at a time, each taking the previous one's output."""

    def __init__(self) -> None:
        self.nodes: list[NodeProto] = []
        self.weights: list[TensorProto] = []
        self.output = _INPUT
        self.last_op = ""

    def add(self, op: str, *weights: np.ndarray, **attributes) -> None:
        from onnx import helper, numpy_helper

        names = []
        for weight in weights:
            names.append(f"w{len(self.weights)}")
            self.weights.append(numpy_helper.from_array(np.ascontiguousarray(weight, dtype=np.float32), names[-1]))
        output = f"{op.lower()}{len(self.nodes)}"
        self.nodes.append(helper.make_node(op, [self.output, *names], [output], **attributes))
        self.output, self.last_op = output, op

    def model(self, height: int, width: int) -> ModelProto:
        from onnx import TensorProto, helper

        graph = helper.make_graph(
            self.nodes, "emotion",
            [helper.make_tensor_value_info(_INPUT, TensorProto.FLOAT, [None, 1, height, width])],
            [helper.make_tensor_value_info(self.output, TensorProto.FLOAT, [None, None])],
            self.weights,
        )
        return helper.make_model(graph, opset_imports=[helper.make_opsetid("", _OPSET)], ir_version=_IR_VERSION)


def _translate(config: dict, weights: h5py.Group) -> tuple[ModelProto, tuple[int, int] | None, float | None, float | None]:
    """(ONNX model, resize-to size, min-max epsilon, temperature) for a chain of supported layers."""
    if config.get("class_name") not in ("Functional", "Sequential"):
        raise UnsupportedModel(f"model class {config.get('class_name')}")
    layers = _flatten_layers(config["config"]["layers"])
    counters: Counter[str] = Counter()

    def variables(kind: str) -> list[np.ndarray]:
        # Keras 3 stores weights by class, numbered in layer order: conv2d, conv2d_1, ...
        key = kind if counters[kind] == 0 else f"{kind}_{counters[kind]}"
        counters[kind] += 1
        group = weights["layers"][key]["vars"]
        return [np.asarray(group[str(i)], dtype=np.float32) for i in range(len(group))]

    input_size = minmax = temperature = None
    input_shape: tuple[int, int, int] | None = None
    size: tuple[int, int, int] | None = None  # (height, width, channels) flowing through the network
    graph = _Graph()
    pending: dict | None = None  # the conv or dense layer waiting for a batch norm and an activation
    flattened = False

    def flush(activation: str = "linear") -> None:
        nonlocal pending
        if pending is None:
            return
        kernel, bias = pending["kernel"], pending["bias"]
        if pending["kind"] == "conv":
            pad = kernel.shape[0] // 2
            graph.add("Conv", kernel.transpose(3, 2, 0, 1), bias, kernel_shape=list(kernel.shape[:2]), pads=[pad] * 4)
        else:
            graph.add("Gemm", kernel, bias)
        if activation == "relu":
            graph.add("Relu")
        pending = None

    for layer in layers:
        kind, cfg = layer["class_name"], layer["config"]
        if kind in _INFERENCE_NO_OPS:
            if kind == "InputLayer" and size is None:
                shape = cfg.get("batch_shape") or cfg.get("batch_input_shape")
                size = tuple(shape[1:])  # type: ignore[assignment]
                if len(size) != 3 or size[2] != 1:
                    raise UnsupportedModel(f"input shape {shape}: expected (None, height, width, 1)")
                input_shape = size
            continue
        if kind == "Resizing" and not graph.nodes and minmax is None:
            if cfg.get("interpolation") != "bilinear" or cfg.get("antialias") or cfg.get("crop_to_aspect_ratio"):
                raise UnsupportedModel("resizing other than plain bilinear")
            input_size = (cfg["height"], cfg["width"])
            size = (cfg["height"], cfg["width"], 1)
        elif kind == "FaceMinMaxScaling" and not graph.nodes:
            minmax = float(cfg.get("epsilon", 1.0))
        elif kind == "Conv2D":
            flush()
            if (cfg["strides"] != [1, 1] or cfg["padding"] != "same" or cfg["dilation_rate"] != [1, 1]
                    or cfg.get("groups", 1) != 1 or cfg["kernel_size"][0] != cfg["kernel_size"][1]
                    or cfg["kernel_size"][0] % 2 == 0 or cfg["activation"] not in ("linear", "relu")
                    or cfg.get("data_format", "channels_last") != "channels_last" or flattened):
                raise UnsupportedModel(f"convolution {cfg['name']}")
            values = variables("conv2d")
            kernel = values[0]
            bias = values[1] if cfg["use_bias"] else np.zeros(kernel.shape[3], np.float32)
            pending = {"kind": "conv", "kernel": kernel, "bias": bias}
            if cfg["activation"] == "relu":
                flush("relu")
            size = (size[0], size[1], kernel.shape[3])
        elif kind == "BatchNormalization":
            if pending is None or cfg.get("axis", -1) not in (-1, 3, [-1], [3]) and pending["kind"] == "conv":
                raise UnsupportedModel(f"batch norm {cfg['name']} not after a convolution or dense layer")
            values = variables("batch_normalization")
            gamma = values.pop(0) if cfg.get("scale", True) else 1.0
            beta = values.pop(0) if cfg.get("center", True) else 0.0
            mean, variance = values
            factor = gamma / np.sqrt(variance + cfg.get("epsilon", 1e-3))
            pending["kernel"] = pending["kernel"] * factor
            pending["bias"] = (pending["bias"] - mean) * factor + beta
        elif kind == "ReLU" or (kind == "Activation" and cfg.get("activation") == "relu"):
            if kind == "ReLU" and (cfg.get("max_value") is not None or cfg.get("negative_slope") or cfg.get("threshold")):
                raise UnsupportedModel(f"ReLU variant {cfg['name']}")
            if pending is None:
                raise UnsupportedModel(f"activation {cfg['name']} not after a convolution or dense layer")
            flush("relu")
        elif kind == "MaxPooling2D":
            flush()
            pool = cfg["pool_size"]
            if (pool != [2, 2] or cfg["strides"] not in ([2, 2], None) or cfg["padding"] != "valid" or flattened
                    or cfg.get("data_format", "channels_last") != "channels_last" or size[0] % 2 or size[1] % 2):
                raise UnsupportedModel(f"pooling {cfg['name']}")
            graph.add("MaxPool", kernel_shape=[2, 2], strides=[2, 2])
            size = (size[0] // 2, size[1] // 2, size[2])
        elif kind == "Flatten":
            flush()
            if flattened or cfg.get("data_format", "channels_last") != "channels_last":
                raise UnsupportedModel(f"flatten {cfg['name']}")
            graph.add("Flatten")
            flattened = True
        elif kind == "GlobalAveragePooling2D":
            flush()
            if cfg.get("keepdims") or cfg.get("data_format", "channels_last") != "channels_last":
                raise UnsupportedModel(f"pooling {cfg['name']}")
            graph.add("GlobalAveragePool")
            graph.add("Flatten")
            size = (size[2],)  # type: ignore[assignment]
            flattened = True
        elif kind == "Dense":
            flush()
            if not flattened or cfg["activation"] not in ("linear", "relu", "softmax"):
                raise UnsupportedModel(f"dense layer {cfg['name']}")
            values = variables("dense")
            kernel = values[0]
            if size is not None and len(size) == 3:
                # Keras flattens height, width, channels; ONNX flattens channels, height, width.
                height, width, channels = size
                kernel = kernel.reshape(height, width, channels, -1).transpose(2, 0, 1, 3).reshape(kernel.shape)
            bias = values[1] if cfg["use_bias"] else np.zeros(kernel.shape[1], np.float32)
            pending = {"kind": "dense", "kernel": kernel, "bias": bias}
            size = (kernel.shape[1],)  # type: ignore[assignment]
            if cfg["activation"] == "relu":
                flush("relu")
            elif cfg["activation"] == "softmax":
                flush()
                graph.add("Softmax", axis=-1)
        elif kind == "TemperatureScaling" and graph.last_op == "Softmax":
            temperature = float(cfg["temperature"])
        else:
            raise UnsupportedModel(f"layer {kind} ({cfg.get('name')})")
    flush()
    if graph.last_op != "Softmax" or size is None or input_shape is None:
        raise UnsupportedModel("the model does not end in a softmax")
    height, width = input_size or input_shape[:2]
    return graph.model(height, width), input_size, minmax, temperature
