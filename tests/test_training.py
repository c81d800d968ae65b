"""Training runs: oversampling, checkpoints, history, resume, the model card and the saved model."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from click.testing import CliRunner

from cli.main import fer
from fer_model.classes import CLASSES
from fer_model.training import balanced_class_weights, cosine_learning_rate, oversampled_indices
from tests.conftest import write_image_folders


def test_oversampling_tops_minority_classes_up_and_keeps_every_original():
    labels = np.array([0] * 100 + [1] * 10 + [2] * 60)
    indices = oversampled_indices(labels, 0.5, np.random.default_rng(0))
    counts = np.bincount(labels[indices], minlength=len(CLASSES))
    assert counts[:3].tolist() == [100, 50, 60]
    assert set(range(len(labels))) <= set(indices.tolist())


def test_oversampling_is_reproducible_per_seed():
    labels = np.array([0] * 50 + [1] * 5)
    a = oversampled_indices(labels, 1.0, np.random.default_rng([1, 3]))
    b = oversampled_indices(labels, 1.0, np.random.default_rng([1, 3]))
    np.testing.assert_array_equal(a, b)


def test_balanced_class_weights_favour_rare_classes():
    weights = balanced_class_weights(np.array([0] * 90 + [1] * 10))
    assert weights[1] == pytest.approx(9 * weights[0])
    assert weights[2] == 0.0


def test_cosine_learning_rate_decays_from_base_to_floor():
    assert cosine_learning_rate(1e-3, 0, 30) == pytest.approx(1e-3)
    assert cosine_learning_rate(1e-3, 30, 30) == pytest.approx(2e-5)
    rates = [cosine_learning_rate(1e-3, e, 30) for e in range(30)]
    assert rates == sorted(rates, reverse=True)


@pytest.fixture
def tiny_data(tmp_path):
    write_image_folders(tmp_path / "data", per_class=3, layout="prefixed")
    return tmp_path / "data"


def _history_epochs(path):
    with path.open() as handle:
        return [int(row["epoch"]) for row in csv.DictReader(handle)]


def test_train_writes_checkpoint_history_model_and_card_then_resumes(tiny_data, tmp_path):
    out = tmp_path / "run"
    runner = CliRunner()
    first = runner.invoke(fer, ["model", "train", "--data", str(tiny_data), "--out", str(out), "--epochs", "1"])
    assert first.exit_code == 0, first.output
    for name in ("checkpoint.keras", "best.keras", "model.keras", "history.csv", "state.json", "card.json", "card.md"):
        assert (out / name).is_file(), name
    assert _history_epochs(out / "history.csv") == [1]

    again = runner.invoke(fer, ["model", "train", "--data", str(tiny_data), "--out", str(out), "--epochs", "2"])
    assert again.exit_code == 1
    assert "already holds a training run" in again.output and "Traceback" not in again.output

    resumed = runner.invoke(fer, ["model", "train", "--data", str(tiny_data), "--out", str(out), "--epochs", "2", "--resume"])
    assert resumed.exit_code == 0, resumed.output
    assert "epoch 2:" in resumed.output and "epoch 1:" not in resumed.output
    assert _history_epochs(out / "history.csv") == [1, 2]
    assert json.loads((out / "state.json").read_text())["epochs_done"] == 2

    card = json.loads((out / "card.json").read_text())
    assert card["recipe"] == "seed" and card["training"]["epochs"] == 2
    assert card["command"].startswith("fer model train") and "--resume" not in card["command"]
    assert set(card["metrics"]) == {"val", "test"}
    assert 0.0 <= card["metrics"]["val"]["accuracy"] <= 1.0
    assert "## Metrics" in (out / "card.md").read_text()


def test_saved_model_carries_its_preprocessing(tiny_data, tmp_path):
    """The served model takes raw uint8 faces of any contrast and gives probabilities."""
    from fer_model.evaluation import predict_probabilities
    from fer_model.registry import load_model, resolve_model

    out = tmp_path / "run"
    result = CliRunner().invoke(fer, ["model", "train", "--data", str(tiny_data), "--out", str(out), "--epochs", "1"])
    assert result.exit_code == 0, result.output
    model = load_model(resolve_model(out))
    rng = np.random.default_rng(0)
    faces = rng.integers(90, 130, size=(5, 48, 48), dtype=np.uint8)
    stretched = ((faces.astype(float) - faces.min(axis=(1, 2), keepdims=True)) * 255
                 / np.ptp(faces, axis=(1, 2), keepdims=True)).round().astype(np.uint8)
    probabilities = predict_probabilities(model, faces)
    assert probabilities.shape == (5, 7)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(probabilities, predict_probabilities(model, stretched), atol=0.02)


def test_unknown_recipe_and_bad_data_are_clear_errors(tiny_data, tmp_path):
    runner = CliRunner()
    result = runner.invoke(fer, ["model", "train", "--recipe", "nope", "--data", str(tiny_data), "--out", str(tmp_path / "r")])
    assert result.exit_code == 1 and "unknown recipe 'nope'" in result.output

    (tiny_data / "train" / "happy" / "Training_999.jpg").write_bytes(b"junk")
    result = runner.invoke(fer, ["model", "train", "--data", str(tiny_data), "--out", str(tmp_path / "r")])
    assert result.exit_code == 1
    assert "Training_999.jpg: unreadable image" in result.output and "--skip-bad" in result.output
    assert "Traceback" not in result.output
    result = runner.invoke(
        fer, ["model", "train", "--data", str(tiny_data), "--out", str(tmp_path / "r"), "--epochs", "1", "--skip-bad"]
    )
    assert result.exit_code == 0, result.output
    assert "Skipped 1 bad item" in result.output


def test_default_recipe_trains_and_serves_calibrated_probabilities(tiny_data, tmp_path):
    from fer_model.calibration import baked_temperature
    from fer_model.evaluation import predict_probabilities
    from fer_model.registry import load_model, resolve_model

    out = tmp_path / "run"
    result = CliRunner().invoke(
        fer, ["model", "train", "--recipe", "default", "--data", str(tiny_data), "--out", str(out), "--epochs", "1"]
    )
    assert result.exit_code == 0, result.output
    card = json.loads((out / "card.json").read_text())
    assert card["recipe"] == "default" and card["training"]["label_smoothing"] == 0.1
    model = load_model(resolve_model(out))
    assert baked_temperature(model) == pytest.approx(card["calibration"]["temperature"])
    probabilities = predict_probabilities(model, np.zeros((3, 48, 48), dtype=np.uint8))
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
