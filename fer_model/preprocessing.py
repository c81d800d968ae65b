"""The one preprocessing definition shared by training and serving.

Faces enter every model as 48x48 single-channel uint8 arrays (FER2013's native
format), produced by `to_face_array`. Everything after that (resizing to the
recipe's input size, per-face normalisation) is a layer inside the model, so a
saved `.keras` file carries its own preprocessing and serving cannot drift from
training.
"""

from __future__ import annotations

import cv2
import keras
import numpy as np

from fer_model.classes import FACE_SIZE


def to_face_array(image: np.ndarray, size: int = FACE_SIZE) -> np.ndarray:
    """Convert an image (gray, BGR or BGRA; any size; uint8 or uint16) to a size x size uint8 gray face."""
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim == 3:
        code = cv2.COLOR_BGRA2GRAY if image.shape[2] == 4 else cv2.COLOR_BGR2GRAY
        image = cv2.cvtColor(image, code)
    if image.ndim != 2:
        raise ValueError(f"expected a 2-D or 3-D image array, got shape {image.shape}")
    if image.dtype == np.uint16:
        image = (image >> 8).astype(np.uint8)
    elif image.dtype != np.uint8:
        image = np.clip(image, 0, 255).astype(np.uint8)
    if image.shape != (size, size):
        shrinking = image.shape[0] > size or image.shape[1] > size
        image = cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)
    return image


def as_model_batch(faces: np.ndarray) -> np.ndarray:
    """(N, 48, 48) or (N, 48, 48, 1) uint8 faces as the float32 (N, 48, 48, 1) batch every model is called with."""
    if faces.ndim == 3:
        faces = faces[..., np.newaxis]
    return faces.astype(np.float32)


def stack_faces(faces: list[np.ndarray]) -> np.ndarray:
    """Stack prepared faces into the (N, 48, 48, 1) uint8 batch every model takes."""
    if not faces:
        return np.zeros((0, FACE_SIZE, FACE_SIZE, 1), dtype=np.uint8)
    return np.stack([to_face_array(f) for f in faces])[..., np.newaxis]


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
