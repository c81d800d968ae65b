"""The one preprocessing definition shared by training and serving.

Faces enter every model as 48x48 single-channel uint8 arrays (FER2013's native
format), produced by `to_face_array`. Everything after that (resizing to the
recipe's input size, per-face normalisation) is a layer inside the model, so a
saved `.keras` file carries its own preprocessing and serving cannot drift from
training.
"""

from __future__ import annotations

import keras

from fer_model.classes import FACE_SIZE


@keras.saving.register_keras_serializable(package="fer_model")
class FaceMinMaxScaling(keras.layers.Layer):
    """Stretch each face's pixel range to [0, 1].

    Rescaling by the face's own minimum and maximum makes a model indifferent to
    the contrast of its input: FER2013 from the original CSV and the
    contrast-stretched image-folder copy look the same after it, and so do
    faces cropped from dim or washed-out photos.
    """

    def __init__(self, epsilon: float = 1.0, **kwargs):
        super().__init__(**kwargs)
        self.epsilon = epsilon

    def call(self, inputs):
        x = keras.ops.cast(inputs, self.compute_dtype)
        low = keras.ops.min(x, axis=(1, 2, 3), keepdims=True)
        high = keras.ops.max(x, axis=(1, 2, 3), keepdims=True)
        return (x - low) / keras.ops.maximum(high - low, self.epsilon)

    def get_config(self) -> dict:
        return {**super().get_config(), "epsilon": self.epsilon}


def preprocessing_layers(input_size: int) -> list[keras.layers.Layer]:
    """Layers that turn 48x48x1 uint8 faces into the recipe's normalised input."""
    layers: list[keras.layers.Layer] = []
    if input_size != FACE_SIZE:
        layers.append(keras.layers.Resizing(input_size, input_size, interpolation="bilinear", name="resize"))
    layers.append(FaceMinMaxScaling(name="face_minmax"))
    return layers
