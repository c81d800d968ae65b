"""The served model as one ONNX graph, written beside the `.keras` file when a model is saved.

The graph holds everything the Keras model does at inference, so a CPU worker only feeds it
faces and reads probabilities:

    uint8 faces (N, 48, 48, 1; any size the model takes) -> resize -> per-face min-max scaling -> network -> softmax
        [flip averaging: the network on each face and its mirror image in one batch, averaged]
        [ensemble: every member as served, averaged]
        [temperature scaling]

It is built from the live Keras model, layer by layer, for the layers this project's recipes use
(convolutions, batch norm, ReLU, max and global average pooling, flatten, dense, softmax, and the
project's own preprocessing, mirror and temperature layers); batch norm is folded into the layer
before it. Layers that do nothing at inference (augmentation, dropout) are left out. Any other layer
raises `UnsupportedModel`, and such a model serves through Keras.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import keras
import numpy as np

from fer_model.calibration import TemperatureScaling
from fer_model.ensemble import AVERAGE_LAYER as ENSEMBLE_AVERAGE
from fer_model.files import atomic_path, file_sha256
from fer_model.layer_roles import IDENTITY_AT_INFERENCE
from fer_model.preprocessing import FaceMinMaxScaling
from fer_model.served_graph import INPUT, OUTPUT, SOURCE_SHA256, UnsupportedModel, int8_path_for, onnx_path_for
from fer_model.flip_averaging import AVERAGE_LAYER as FLIP_AVERAGE
from fer_model.flip_averaging import NETWORK_LAYER

if TYPE_CHECKING:
    from onnx import ModelProto

OPSET = 17
IR_VERSION = 8  # the file format that opset 17 came with: readable by every supported ONNX Runtime
_PROBABILITY_FLOOR = 1e-7  # as TemperatureScaling clips


def save_served_model(model: keras.Model, path: Path) -> Path | None:
    """Save ``model`` to ``path`` (.keras) and its ONNX graph beside it, each atomically.

    Returns the ONNX file, or None when the model has a layer the export does not handle (a stale
    graph from an earlier save is then removed, so workers serve the new file through Keras). An int8
    graph made from an earlier save is removed: it no longer matches the file."""
    with atomic_path(path) as temporary:
        model.save(temporary)
    int8_path_for(path).unlink(missing_ok=True)
    onnx_path = onnx_path_for(path)
    try:
        graph = export_onnx(model, source_sha256=file_sha256(path))
    except UnsupportedModel:
        onnx_path.unlink(missing_ok=True)
        return None
    with atomic_path(onnx_path) as temporary:
        temporary.write_bytes(graph.SerializeToString())
    return onnx_path


def export_onnx(model: keras.Model, source_sha256: str = "") -> ModelProto:
    """The served model as an ONNX graph from uint8 faces to probabilities; UnsupportedModel if it can't be."""
    from onnx import TensorProto, checker, helper

    shape = tuple(model.input_shape)
    if len(shape) != 4 or shape[3] != 1:
        raise UnsupportedModel(f"input shape {shape}: expected (None, height, width, 1)")
    height, width = shape[1], shape[2]
    graph = _Graph()
    faces = graph.op("Cast", [INPUT], to=TensorProto.FLOAT)
    nchw = graph.op("Transpose", [faces], perm=[0, 3, 1, 2])
    probabilities = _served(graph, model, nchw)
    graph.nodes.append(helper.make_node("Identity", [probabilities], [OUTPUT]))
    onnx_graph = helper.make_graph(
        graph.nodes,
        model.name,
        [helper.make_tensor_value_info(INPUT, TensorProto.UINT8, [None, height, width, 1])],
        [helper.make_tensor_value_info(OUTPUT, TensorProto.FLOAT, [None, None])],
        graph.initializers,
    )
    exported = helper.make_model(onnx_graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=IR_VERSION)
    if source_sha256:
        helper.set_model_props(exported, {SOURCE_SHA256: source_sha256})
    try:
        checker.check_model(exported)
    except checker.ValidationError as error:
        raise UnsupportedModel(f"the exported graph is not valid ONNX ({error})") from error
    return exported


class _Graph:
    """ONNX nodes and weights, each operation's output named after its position."""

    def __init__(self) -> None:
        self.nodes: list = []
        self.initializers: list = []

    def op(self, op_type: str, inputs: list[str], outputs: int = 1, **attributes) -> str | list[str]:
        from onnx import helper

        names = [f"{op_type.lower()}_{len(self.nodes)}_{i}" for i in range(outputs)]
        self.nodes.append(helper.make_node(op_type, inputs, names, **attributes))
        return names[0] if outputs == 1 else names

    def constant(self, value: np.ndarray) -> str:
        from onnx import numpy_helper

        name = f"w{len(self.initializers)}"
        array = np.ascontiguousarray(value)
        if array.dtype == np.float64:
            array = array.astype(np.float32)
        self.initializers.append(numpy_helper.from_array(array, name))
        return name


def _served(graph: _Graph, model: keras.Model, x: str) -> str:
    """The model's output for NCHW float faces ``x``: an ensemble, a flip-averaged network or a chain."""
    names = {layer.name for layer in model.layers}
    if ENSEMBLE_AVERAGE in names:
        members = [layer for layer in model.layers if isinstance(layer, keras.Model)]
        output = graph.op("Mean", [_served(graph, member, x) for member in members])
    elif FLIP_AVERAGE in names:
        mirrored = graph.op("Slice", [x, graph.constant(np.array([-1])), graph.constant(np.array([np.iinfo(np.int64).min])),
                                      graph.constant(np.array([3])), graph.constant(np.array([-1]))])
        both = graph.op("Concat", [x, mirrored], axis=0)
        first, second = graph.op("Split", [_chain(graph, model.get_layer(NETWORK_LAYER), both)], outputs=2, axis=0)
        output = graph.op("Mean", [first, second])
    else:
        return _chain(graph, model, x)
    extra = [layer for layer in model.layers if not isinstance(layer, (keras.layers.InputLayer, keras.Model))
             and layer.name not in (ENSEMBLE_AVERAGE, FLIP_AVERAGE) and type(layer).__name__ != "MirrorFaces"]
    for layer in extra:
        if not isinstance(layer, TemperatureScaling) or layer is not model.layers[-1]:
            raise UnsupportedModel(f"layer {type(layer).__name__} ({layer.name}) around averaged networks")
        output = _temperature(graph, output, layer.temperature)
    return output


def _temperature(graph: _Graph, probabilities: str, temperature: float) -> str:
    clipped = graph.op("Clip", [probabilities, graph.constant(np.float32(_PROBABILITY_FLOOR)), graph.constant(np.float32(1.0))])
    scaled = graph.op("Div", [graph.op("Log", [clipped]), graph.constant(np.float32(temperature))])
    return graph.op("Softmax", [scaled], axis=-1)


def _layers_in_order(model: keras.Model) -> list[keras.layers.Layer]:
    layers = []
    for layer in model.layers:
        if isinstance(layer, keras.Sequential) or (isinstance(layer, keras.Model) and layer.name != NETWORK_LAYER):
            layers += _layers_in_order(layer)
        else:
            layers.append(layer)
    return layers


def _chain(graph: _Graph, model: keras.Model, x: str) -> str:
    """A network that is one chain of layers, batch norms folded into the convolution or dense layer before them."""
    pending: dict | None = None  # a convolution or dense layer waiting for its batch norm and activation
    flattened = False
    ends_in_softmax = False

    def flush(activation: str = "linear") -> None:
        nonlocal pending, x
        if pending is None:
            return
        kernel, bias = pending["kernel"], pending["bias"]
        if pending["kind"] == "conv":
            pad = kernel.shape[0] // 2
            x = graph.op("Conv", [x, graph.constant(kernel.transpose(3, 2, 0, 1)), graph.constant(bias)],
                         kernel_shape=list(kernel.shape[:2]), pads=[pad] * 4)
        else:
            x = graph.op("Gemm", [x, graph.constant(kernel), graph.constant(bias)])
        if activation == "relu":
            x = graph.op("Relu", [x])
        pending = None

    for layer in _layers_in_order(model):
        kind = type(layer).__name__
        if isinstance(layer, keras.layers.InputLayer) or kind in IDENTITY_AT_INFERENCE:
            continue
        if ends_in_softmax and not isinstance(layer, TemperatureScaling):
            raise UnsupportedModel(f"layer {kind} ({layer.name}) after the softmax")
        if isinstance(layer, keras.layers.Resizing):
            if layer.interpolation != "bilinear" or layer.antialias or layer.crop_to_aspect_ratio or layer.pad_to_aspect_ratio:
                raise UnsupportedModel(f"resizing other than plain bilinear ({layer.name})")
            shape = graph.op("Shape", [x])
            batch_and_channels = graph.op("Slice", [shape, graph.constant(np.array([0])), graph.constant(np.array([2]))])
            sizes = graph.op("Concat", [batch_and_channels, graph.constant(np.array([layer.height, layer.width]))], axis=0)
            x = graph.op("Resize", [x, "", "", sizes], mode="linear", coordinate_transformation_mode="half_pixel")
        elif isinstance(layer, FaceMinMaxScaling):
            low = graph.op("ReduceMin", [x], axes=[1, 2, 3], keepdims=1)
            high = graph.op("ReduceMax", [x], axes=[1, 2, 3], keepdims=1)
            spread = graph.op("Max", [graph.op("Sub", [high, low]), graph.constant(np.float32(layer.epsilon))])
            x = graph.op("Div", [graph.op("Sub", [x, low]), spread])
        elif isinstance(layer, keras.layers.Conv2D):
            flush()
            if (tuple(layer.strides) != (1, 1) or layer.padding != "same" or tuple(layer.dilation_rate) != (1, 1)
                    or layer.groups != 1 or layer.kernel_size[0] != layer.kernel_size[1] or layer.kernel_size[0] % 2 == 0
                    or layer.data_format != "channels_last" or flattened
                    or layer.activation.__name__ not in ("linear", "relu")):
                raise UnsupportedModel(f"convolution {layer.name}")
            kernel = np.asarray(layer.kernel.numpy(), np.float32)
            bias = np.asarray(layer.bias.numpy(), np.float32) if layer.use_bias else np.zeros(kernel.shape[3], np.float32)
            pending = {"kind": "conv", "kernel": kernel, "bias": bias}
            if layer.activation.__name__ == "relu":
                flush("relu")
        elif isinstance(layer, keras.layers.BatchNormalization):
            if pending is None or layer.axis not in (-1, 3, [-1], [3]) and pending["kind"] == "conv":
                raise UnsupportedModel(f"batch norm {layer.name} not after a convolution or dense layer")
            gamma = layer.gamma.numpy() if layer.scale else 1.0
            beta = layer.beta.numpy() if layer.center else 0.0
            factor = gamma / np.sqrt(layer.moving_variance.numpy() + layer.epsilon)
            pending["kernel"] = pending["kernel"] * factor
            pending["bias"] = (pending["bias"] - layer.moving_mean.numpy()) * factor + beta
        elif isinstance(layer, keras.layers.ReLU) or (isinstance(layer, keras.layers.Activation)
                                                      and getattr(layer.activation, "__name__", "") == "relu"):
            if isinstance(layer, keras.layers.ReLU) and (layer.max_value is not None or layer.negative_slope or layer.threshold):
                raise UnsupportedModel(f"ReLU variant {layer.name}")
            if pending is None:
                x = graph.op("Relu", [x])
            else:
                flush("relu")
        elif isinstance(layer, keras.layers.MaxPooling2D):
            flush()
            if (tuple(layer.pool_size) != (2, 2) or tuple(layer.strides) != (2, 2) or layer.padding != "valid"
                    or layer.data_format != "channels_last" or flattened):
                raise UnsupportedModel(f"pooling {layer.name}")
            x = graph.op("MaxPool", [x], kernel_shape=[2, 2], strides=[2, 2])
        elif isinstance(layer, keras.layers.Flatten):
            flush()
            if flattened:
                raise UnsupportedModel(f"flatten {layer.name} after flattening")
            # Keras flattens height, width, channels: back to channels-last first.
            x = graph.op("Flatten", [graph.op("Transpose", [x], perm=[0, 2, 3, 1])])
            flattened = True
        elif isinstance(layer, keras.layers.GlobalAveragePooling2D):
            flush()
            if layer.keepdims or flattened:
                raise UnsupportedModel(f"pooling {layer.name}")
            x = graph.op("Flatten", [graph.op("GlobalAveragePool", [x])])
            flattened = True
        elif isinstance(layer, keras.layers.Dense):
            flush()
            activation = layer.activation.__name__
            if not flattened or activation not in ("linear", "relu", "softmax"):
                raise UnsupportedModel(f"dense layer {layer.name}")
            kernel = np.asarray(layer.kernel.numpy(), np.float32)
            bias = np.asarray(layer.bias.numpy(), np.float32) if layer.use_bias else np.zeros(kernel.shape[1], np.float32)
            pending = {"kind": "dense", "kernel": kernel, "bias": bias}
            if activation == "relu":
                flush("relu")
            elif activation == "softmax":
                flush()
                x = graph.op("Softmax", [x], axis=-1)
                ends_in_softmax = True
        elif isinstance(layer, TemperatureScaling) and ends_in_softmax:
            x = _temperature(graph, x, layer.temperature)
        else:
            raise UnsupportedModel(f"layer {kind} ({layer.name})")
    if not ends_in_softmax:
        raise UnsupportedModel("the network does not end in a softmax")
    return x
