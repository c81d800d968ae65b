"""Serving with batch normalisation folded: the same probabilities from fewer layers."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from fer_model.calibration import baked_temperature, with_temperature
from fer_model.inference import folded_for_inference
from fer_model.recipes import get_recipe
from fer_model.registry import load_model, resolve_model
from fer_model.flip_averaging import is_flip_averaged, single_pass, with_flip_averaging
from workers.serving.classifier import EmotionClassifier


def _faces(count: int = 64) -> np.ndarray:
    rng = np.random.default_rng(11)
    smooth = rng.integers(0, 256, size=(count, 12, 12)).repeat(4, axis=1).repeat(4, axis=2)
    return np.clip(smooth + rng.integers(0, 30, size=smooth.shape), 0, 255).astype(np.float32)[..., None]


def _with_statistics(model: keras.Model) -> keras.Model:
    """Give every batch normalisation non-trivial statistics, as training would."""
    rng = np.random.default_rng(5)
    for layer in single_pass(model).layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.set_weights([rng.uniform(0.5, 1.5, size=w.shape).astype(np.float32) for w in layer.get_weights()])
    return model


def _batch_norms(model: keras.Model) -> int:
    return sum(isinstance(layer, keras.layers.BatchNormalization) for layer in single_pass(model).layers)


@pytest.mark.slow  # loads a committed model through TensorFlow
@pytest.mark.parametrize("name", ["seed", "seed-flip"])
def test_a_committed_model_folded_gives_its_probabilities_without_batch_norms(name):
    model = load_model(resolve_model(name))
    folded = folded_for_inference(model)
    assert _batch_norms(model) > 0 and _batch_norms(folded) == 0
    assert is_flip_averaged(folded) == is_flip_averaged(model)
    assert baked_temperature(folded) == baked_temperature(model)
    faces = _faces()
    np.testing.assert_allclose(folded.predict_on_batch(faces), model.predict_on_batch(faces), atol=1e-5)


@pytest.mark.parametrize("recipe", ["default", "seed-flip"])
def test_every_recipe_folds_with_its_temperature_and_averaging(recipe):
    network = _with_statistics(get_recipe(recipe).build(2))
    model = with_temperature(get_recipe(recipe).for_serving(network), 1.4)
    folded = folded_for_inference(model)
    assert _batch_norms(folded) == 0
    assert baked_temperature(folded) == pytest.approx(1.4)
    faces = _faces()
    np.testing.assert_allclose(folded.predict_on_batch(faces), model.predict_on_batch(faces), atol=1e-5)


def test_a_network_that_is_not_a_chain_is_served_as_it_is():
    faces = keras.Input(shape=(48, 48, 1))
    x = keras.layers.Rescaling(1 / 255)(faces)
    branch = keras.layers.BatchNormalization()(keras.layers.Conv2D(4, 3, padding="same")(x))
    x = keras.layers.Add()([keras.layers.Conv2D(4, 1)(x), branch])
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(faces, keras.layers.Dense(7, activation="softmax")(x))
    assert folded_for_inference(model) is model


def test_a_batch_norm_after_an_activation_stays():
    faces = keras.Input(shape=(48, 48, 1))
    x = keras.layers.Conv2D(4, 3, activation="relu")(keras.layers.Rescaling(1 / 255)(faces))
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.Conv2D(4, 3, use_bias=False)(x)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = _with_statistics(keras.Model(faces, keras.layers.Dense(7, activation="softmax")(x)))
    folded = folded_for_inference(model)
    assert _batch_norms(model) == 2 and _batch_norms(folded) == 1
    np.testing.assert_allclose(folded.predict_on_batch(_faces()), model.predict_on_batch(_faces()), atol=1e-5)


@pytest.mark.slow  # loads a committed model through TensorFlow
def test_folding_twice_gives_the_same_model_again():
    model = load_model(resolve_model("seed"))
    first, second = folded_for_inference(model), folded_for_inference(model)
    assert _batch_norms(second) == 0
    np.testing.assert_allclose(first.predict_on_batch(_faces()), second.predict_on_batch(_faces()), atol=1e-6)


@pytest.mark.slow  # loads a committed model through TensorFlow
def test_the_keras_classifier_serves_the_folded_model():
    classifier = EmotionClassifier("seed-flip", "keras")
    assert _batch_norms(classifier.model) == 0
    faces = _faces().astype(np.uint8)
    expected = load_model(resolve_model("seed-flip")).predict_on_batch(faces.astype(np.float32))
    np.testing.assert_allclose(classifier.predict_faces(faces), expected, atol=1e-5)


def test_the_flip_averaged_structure_survives_folding():
    network = _with_statistics(get_recipe("seed").build(1))
    folded = folded_for_inference(with_flip_averaging(network))
    assert is_flip_averaged(folded) and _batch_norms(folded) == 0


def test_a_fold_that_changes_the_probabilities_or_fails_leaves_the_model_as_saved(monkeypatch):
    from fer_model import inference

    model = _with_statistics(get_recipe("seed").build(1))
    other = _with_statistics(get_recipe("seed").build(2))  # different weights: different probabilities
    monkeypatch.setattr(inference, "_fold_served_model", lambda m: other)
    assert inference.folded_for_inference(model) is model

    def broken(m):
        raise AttributeError("a private attribute this Keras version lacks")

    monkeypatch.setattr(inference, "_fold_served_model", broken)
    assert inference.folded_for_inference(model) is model
