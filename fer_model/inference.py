"""The served model rebuilt for inference: batch normalisation folded into the layer before it.

At inference a BatchNormalization layer is a fixed affine map per channel,
``y = (x - mean) * gamma / sqrt(variance + epsilon) + beta``, so when it follows a
convolution or dense layer without an activation it folds into that layer's kernel and bias.
The folded graph computes the same probabilities (within float rounding), in fewer passes
over the activations: TensorFlow then runs convolution, bias and ReLU as one fused oneDNN
call. Layers that leave faces unchanged at inference (random augmentation, dropout) are
left out. The `.keras` file is not touched: this is a view of it for the workers.
"""

from __future__ import annotations

import logging

import keras
import numpy as np

from fer_model.calibration import TemperatureScaling, baked_temperature, with_temperature, without_temperature
from fer_model.layer_roles import IDENTITY_AT_INFERENCE
from fer_model.flip_averaging import is_flip_averaged, single_pass, with_flip_averaging

logger = logging.getLogger(__name__)

# Folded and original probabilities must agree this closely on a check batch, or the original is served.
FOLDING_TOLERANCE = 1e-4


class NotFoldable(Exception):
    """The network is not a plain chain of layers, so it is served as it is."""


def folded_for_inference(model: keras.Model) -> keras.Model:
    """``model`` with every foldable batch normalisation folded; ``model`` itself if it can't be rebuilt exactly."""
    try:
        folded = _fold_served_model(model)
        check = np.random.default_rng(0).integers(0, 256, size=(8, *model.input_shape[1:])).astype(np.float32)
        difference = float(np.max(np.abs(np.asarray(folded.predict_on_batch(check))
                                         - np.asarray(model.predict_on_batch(check)))))
    except NotFoldable as reason:
        logger.info("model %s served unfolded: %s", model.name, reason)
        return model
    except Exception as error:  # a layer this rebuild did not foresee: the model as saved still serves
        logger.warning("model %s served unfolded: folding failed (%s: %s)", model.name, type(error).__name__, error)
        return model
    if not difference <= FOLDING_TOLERANCE:
        logger.warning("model %s served unfolded: folded probabilities differ by %.2g", model.name, difference)
        return model
    return folded


def _fold_served_model(model: keras.Model) -> keras.Model:
    has_temperature = isinstance(model.layers[-1], TemperatureScaling)
    network = without_temperature(model)
    if is_flip_averaged(network):
        folded = with_flip_averaging(_fold_chain(single_pass(network)))
    else:
        folded = _fold_chain(network)
    folded = keras.Model(folded.input, folded.output, name=model.name)
    return with_temperature(folded, baked_temperature(model)) if has_temperature else folded


def _is_identity_at_inference(layer: keras.layers.Layer) -> bool:
    if isinstance(layer, keras.Sequential):
        return all(_is_identity_at_inference(inner) for inner in layer.layers)
    return type(layer).__name__ in IDENTITY_AT_INFERENCE


def _check_chain(network: keras.Model) -> None:
    """Raise NotFoldable unless each layer takes exactly the output of the layer before it."""
    if not isinstance(network, keras.Model) or len(network.inputs) != 1 or len(network.outputs) != 1:
        raise NotFoldable("not a single-input, single-output model")
    previous = network.layers[0]
    if not isinstance(previous, keras.layers.InputLayer):
        raise NotFoldable("the first layer is not the input")
    for layer in network.layers[1:]:
        if not any(
            len(node.input_tensors) == 1 and node.input_tensors[0]._keras_history.operation is previous
            for node in layer._inbound_nodes
        ):
            raise NotFoldable(f"layer {layer.name} does not take the output of {previous.name} alone")
        previous = layer
    if network.outputs[0]._keras_history.operation is not previous:
        raise NotFoldable("the output is not the last layer's")


def _foldable_pair(layer: keras.layers.Layer, following: keras.layers.Layer | None) -> bool:
    return (
        isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense))
        and isinstance(following, keras.layers.BatchNormalization)
        and layer.get_config().get("activation") == "linear"
        and following.axis in (-1, len(following.input.shape) - 1)
        and layer.get_config().get("data_format", "channels_last") == "channels_last"
    )


def _folded_layer(layer: keras.layers.Layer, norm: keras.layers.BatchNormalization) -> keras.layers.Layer:
    variance = np.asarray(norm.moving_variance)
    scale = np.asarray(norm.gamma) if norm.scale else np.ones_like(variance)
    offset = np.asarray(norm.beta) if norm.center else np.zeros_like(variance)
    factor = scale / np.sqrt(variance + norm.epsilon)
    kernel = np.asarray(layer.kernel) * factor  # the output channels are the kernel's last axis
    bias = np.asarray(layer.bias) if layer.use_bias else np.zeros_like(variance)
    folded = type(layer).from_config({**layer.get_config(), "use_bias": True})
    folded.build(layer.input.shape)
    folded.set_weights([kernel, (bias - np.asarray(norm.moving_mean)) * factor + offset])
    return folded


def _fold_chain(network: keras.Model) -> keras.Model:
    _check_chain(network)
    layers = [layer for layer in network.layers[1:] if not _is_identity_at_inference(layer)]
    faces = keras.Input(shape=network.input_shape[1:], name=network.layers[0].name)
    x = faces
    position = 0
    while position < len(layers):
        layer = layers[position]
        following = layers[position + 1] if position + 1 < len(layers) else None
        if _foldable_pair(layer, following):
            x = _folded_layer(layer, following)(x)
            position += 2
        else:
            x = layer(x)
            position += 1
    return keras.Model(faces, x, name=network.name)
