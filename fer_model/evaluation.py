"""Run a model over a split (the figures and files live in evaluation_report)."""

from __future__ import annotations

from typing import NamedTuple

import keras
import numpy as np

from fer_model.faces import as_model_batch
from fer_model.flip_averaging import is_flip_averaged, single_pass

PREDICT_BATCH = 256


def predict_probabilities(model: keras.Model, faces: np.ndarray, batch_size: int = PREDICT_BATCH) -> np.ndarray:
    """(N, 7) probabilities for (N, 48, 48[, 1]) uint8 faces."""
    if len(faces) == 0:
        return np.zeros((0, model.output_shape[-1]), dtype=np.float32)
    return np.asarray(model.predict(as_model_batch(faces), batch_size=batch_size, verbose=0))


def flip_averaged_probabilities(model: keras.Model, faces: np.ndarray, batch_size: int = PREDICT_BATCH) -> np.ndarray:
    """Test-time augmentation: the mean of the predictions for each face and its mirror image."""
    mirrored = faces[:, :, ::-1, ...]
    return (predict_probabilities(model, faces, batch_size) + predict_probabilities(model, mirrored, batch_size)) / 2


class FlipChoices(NamedTuple):
    """A model's probabilities as served, for one pass of its network and with flip averaging."""

    served: np.ndarray
    one_pass: np.ndarray
    flip_averaged: np.ndarray


def flip_choices(model: keras.Model, faces: np.ndarray, batch_size: int = PREDICT_BATCH) -> FlipChoices:
    """The served probabilities and the other test-time choice's, with no network pass run twice:
    a flip-averaged model's served output is its flip average; a plain model's is its one pass."""
    served = predict_probabilities(model, faces, batch_size)
    if is_flip_averaged(model):
        return FlipChoices(served, predict_probabilities(single_pass(model), faces, batch_size), served)
    mirrored = predict_probabilities(model, faces[:, :, ::-1, ...], batch_size)
    return FlipChoices(served, served, (served + mirrored) / 2)
