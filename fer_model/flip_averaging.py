"""Test-time averaging inside the served model: each face and its mirror image, probabilities averaged.

A flip-averaged model is a plain network called twice in one graph,

    face -> network ---------------> Average -> [TemperatureScaling]
    face -> MirrorFaces -> network -/

so the `.keras` file alone serves the averaged, calibrated probabilities; workers, evaluation
and the ONNX translation need no flag beside it. It costs two passes of the network a face.
"""

from __future__ import annotations

import keras

from fer_model.calibration import without_temperature

AVERAGE_LAYER = "flip_average"
NETWORK_LAYER = "network"


@keras.saving.register_keras_serializable(package="fer_model")
class MirrorFaces(keras.layers.Layer):
    """Flip (N, height, width, channels) faces left to right."""

    def call(self, faces):
        return keras.ops.flip(faces, axis=2)


def is_flip_averaged(model: keras.Model) -> bool:
    return any(layer.name == AVERAGE_LAYER for layer in model.layers)


def with_flip_averaging(model: keras.Model) -> keras.Model:
    """The uncalibrated network of ``model``, averaged over each face and its mirror image (no temperature)."""
    network = without_temperature(model)
    if is_flip_averaged(network):
        return network
    network = keras.Model(network.input, network.output, name=NETWORK_LAYER)
    faces = keras.Input(shape=network.input_shape[1:], name="face")
    mirrored = MirrorFaces(name="mirror")(faces)
    averaged = keras.layers.Average(name=AVERAGE_LAYER)([network(faces), network(mirrored)])
    return keras.Model(faces, averaged, name=model.name)


def single_pass(model: keras.Model) -> keras.Model:
    """The network a flip-averaged model calls twice (uncalibrated); any other model as it is."""
    return model.get_layer(NETWORK_LAYER) if is_flip_averaged(model) else model
