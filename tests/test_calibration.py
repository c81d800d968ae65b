"""Temperature scaling: fitting, the expected calibration error, and the layer the served model carries."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest
from click.testing import CliRunner

from cli.main import fer
from fer_model.calibration import (
    TemperatureScaling,
    baked_temperature,
    calibration_summary,
    expected_calibration_error,
    fit_temperature,
    rescale,
    with_temperature,
)
from fer_model.registry import load_model, resolve_model
from tests.conftest import write_image_folders


def _overconfident(n: int = 4000, temperature: float = 2.5, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities whose labels are drawn from softmax(logits / T) while the model reports softmax(logits)."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 3, size=(n, 7))
    true = rescale(np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True), temperature)
    labels = np.array([rng.choice(7, p=row) for row in true])
    reported = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return reported, labels


def test_fit_temperature_recovers_the_temperature_that_generated_the_labels():
    probabilities, labels = _overconfident(temperature=2.5)
    assert fit_temperature(probabilities, labels) == pytest.approx(2.5, rel=0.1)


def test_calibration_lowers_the_expected_calibration_error_even_cross_fitted():
    probabilities, labels = _overconfident()
    summary = calibration_summary(probabilities, labels)
    assert summary["ece_before"] > 0.1
    assert summary["ece_after"] < 0.03 and summary["ece_after_cross_fitted"] < 0.04
    assert summary["nll_after"] < summary["nll_before"]


def test_expected_calibration_error_of_known_cases():
    always_right = np.eye(7)[[0, 1, 2, 3]]
    assert expected_calibration_error(always_right, np.array([0, 1, 2, 3])) == 0.0
    assert expected_calibration_error(always_right, np.array([1, 2, 3, 4])) == 1.0
    half = np.full((4, 7), 0.5 / 6)
    half[:, 0] = 0.5
    assert expected_calibration_error(half, np.array([0, 0, 1, 1])) == pytest.approx(0.0)


def test_rescaling_keeps_every_prediction_and_sums_to_one():
    probabilities, _ = _overconfident(n=200)
    for temperature in (0.5, 1.0, 3.0):
        scaled = rescale(probabilities, temperature)
        np.testing.assert_array_equal(scaled.argmax(axis=1), probabilities.argmax(axis=1))
        np.testing.assert_allclose(scaled.sum(axis=1), 1.0, atol=1e-9)
    np.testing.assert_allclose(rescale(rescale(probabilities, 2.0), 0.5), probabilities, atol=1e-5)


def test_temperature_layer_matches_numpy_survives_saving_and_replaces_an_earlier_one(tmp_path):
    inputs = keras.Input(shape=(7,))
    model = keras.Model(inputs, keras.layers.Softmax()(inputs))
    logits = np.random.default_rng(1).normal(0, 2, size=(16, 7)).astype("float32")
    plain = np.asarray(model(logits))
    assert baked_temperature(model) == 1.0

    scaled = with_temperature(with_temperature(model, 3.0), 1.7)
    assert baked_temperature(scaled) == pytest.approx(1.7)
    assert sum(isinstance(layer, TemperatureScaling) for layer in scaled.layers) == 1
    np.testing.assert_allclose(np.asarray(scaled(logits)), rescale(plain, 1.7), atol=1e-5)

    scaled.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    assert baked_temperature(loaded) == pytest.approx(1.7)
    np.testing.assert_allclose(np.asarray(loaded(logits)), np.asarray(scaled(logits)), atol=1e-6)


@pytest.mark.slow
def test_fer_model_calibrate_rewrites_the_model_and_its_card(tmp_path):
    write_image_folders(tmp_path / "data", per_class=3, layout="prefixed")
    runner = CliRunner()
    out = tmp_path / "run"
    trained = runner.invoke(fer, ["model", "train", "--data", str(tmp_path / "data"), "--out", str(out), "--epochs", "1"])
    assert trained.exit_code == 0, trained.output
    card = json.loads((out / "card.json").read_text())
    assert card["calibration"]["temperature"] == pytest.approx(baked_temperature(load_model(resolve_model(out))))
    before_sha = card["model_sha256"]

    write_image_folders(tmp_path / "other", per_class=4, layout="prefixed")
    result = runner.invoke(fer, ["model", "calibrate", "--model", str(out), "--data", str(tmp_path / "other")])
    assert result.exit_code == 0, result.output
    assert "expected calibration error" in result.output
    card = json.loads((out / "card.json").read_text())
    assert card["calibration"]["n"] == 28 and card["model_sha256"] != before_sha
    model = load_model(resolve_model(out))
    assert baked_temperature(model) == pytest.approx(card["calibration"]["temperature"])
    assert sum(isinstance(layer, TemperatureScaling) for layer in model.layers) == 1
    assert "## Calibration" in (out / "card.md").read_text()


def test_calibrating_a_bare_model_file_is_a_clear_error(tmp_path):
    write_image_folders(tmp_path / "data", per_class=1, layout="prefixed")
    inputs = keras.Input(shape=(48, 48, 1))
    keras.Model(inputs, keras.layers.Dense(7, activation="softmax")(keras.layers.Flatten()(inputs))).save(tmp_path / "bare.keras")
    result = CliRunner().invoke(fer, ["model", "calibrate", "--model", str(tmp_path / "bare.keras"), "--data", str(tmp_path / "data")])
    assert result.exit_code == 1 and "no card.json beside the model" in result.output
    assert "Traceback" not in result.output
