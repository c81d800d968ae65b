"""The shared preprocessing: face arrays and the in-model scaling layer."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from fer_model.faces import stack_faces, to_face_array
from fer_model.preprocessing import FaceMinMaxScaling


@pytest.mark.parametrize(
    "image",
    [
        np.zeros((100, 80), np.uint8),
        np.zeros((30, 30, 3), np.uint8),
        np.zeros((60, 60, 4), np.uint8),
        np.zeros((48, 48, 1), np.uint8),
        np.full((50, 50), 65535, np.uint16),
    ],
)
def test_any_image_becomes_a_48x48_gray_uint8_face(image):
    face = to_face_array(image)
    assert face.shape == (48, 48) and face.dtype == np.uint8


def test_sixteen_bit_images_keep_their_brightness():
    assert to_face_array(np.full((48, 48), 65535, np.uint16)).max() == 255


def test_stack_faces_gives_model_batches():
    batch = stack_faces([np.zeros((10, 10), np.uint8), np.zeros((70, 90, 3), np.uint8)])
    assert batch.shape == (2, 48, 48, 1) and batch.dtype == np.uint8
    assert stack_faces([]).shape == (0, 48, 48, 1)


def test_min_max_scaling_maps_each_face_to_unit_range_and_ignores_contrast():
    rng = np.random.default_rng(0)
    low_contrast = rng.integers(100, 140, size=(2, 48, 48, 1)).astype("float32")
    stretched = (low_contrast - 100) * (255 / 39)
    layer = FaceMinMaxScaling()
    a = keras.ops.convert_to_numpy(layer(low_contrast))
    b = keras.ops.convert_to_numpy(layer(stretched))
    assert a.min() == pytest.approx(0) and a.max() == pytest.approx(1)
    np.testing.assert_allclose(a, b, atol=1e-5)


def test_flat_faces_do_not_divide_by_zero():
    out = keras.ops.convert_to_numpy(FaceMinMaxScaling()(np.full((1, 48, 48, 1), 80, "float32")))
    assert np.isfinite(out).all() and (out == 0).all()
