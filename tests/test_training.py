"""Training runs: oversampling, checkpoints, history, resume, the model card and the saved model."""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import replace

import numpy as np
import pytest
from click.testing import CliRunner

from cli.main import fer
from fer_model.classes import CLASSES
from fer_model import training
from fer_model.training import balanced_class_weights, oversampled_indices, read_history
from tests.conftest import REPO_ROOT, write_image_folders


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


def test_learning_rate_warms_up_then_decays_by_cosine_to_two_percent():
    from fer_model.recipes import DEFAULT

    schedule = DEFAULT.make_optimizer(steps_per_epoch=10, epochs=30).learning_rate
    assert float(schedule) == pytest.approx(DEFAULT.learning_rate)  # no warm-up: the peak at step 0
    warm = replace(DEFAULT, warmup_epochs=2).make_optimizer(steps_per_epoch=10, epochs=30)._learning_rate
    rates = [float(warm(step)) for step in (0, 10, 20, 160, 300)]
    assert rates[0] == pytest.approx(DEFAULT.learning_rate / 10)
    assert rates[2] == pytest.approx(DEFAULT.learning_rate)
    assert rates[0] < rates[1] < rates[2] > rates[3] > rates[4]
    assert rates[4] == pytest.approx(0.02 * DEFAULT.learning_rate)


def test_each_epoch_draws_its_own_oversampled_order_from_seed_and_epoch():
    from fer_model.data import Split
    from fer_model.training import OversampledFaces

    labels = np.array([0] * 40 + [1] * 4)
    split = Split(np.zeros((44, 48, 48), np.uint8), labels, np.array([""] * 44))
    data = OversampledFaces(split, 0.5, batch_size=8, seed=3)
    assert data.size == 60 and len(data) == 8
    first = np.concatenate([data[i][1].argmax(axis=1) for i in range(len(data))])
    assert np.bincount(first).tolist() == [40, 20]
    order_0 = data._indices().copy()
    data.epoch = 1
    assert not np.array_equal(order_0, data._indices())
    data.epoch = 0
    np.testing.assert_array_equal(order_0, data._indices())


@pytest.fixture
def tiny_data(tmp_path):
    write_image_folders(tmp_path / "data", per_class=3, layout="prefixed")
    return tmp_path / "data"


def _history_epochs(path):
    with path.open() as handle:
        return [int(row["epoch"]) for row in csv.DictReader(handle)]


@pytest.mark.slow
def test_train_writes_backup_history_model_and_card_and_refuses_to_overwrite(tiny_data, tmp_path):
    out = tmp_path / "run"
    runner = CliRunner()
    first = runner.invoke(fer, ["model", "train", "--data", str(tiny_data), "--out", str(out), "--epochs", "2"])
    assert first.exit_code == 0, first.output
    assert "epoch 1:" in first.output and "epoch 2:" in first.output
    for name in ("run.json", "backup/latest.weights.h5", "best.keras", "model.keras", "history.csv", "card.json", "card.md"):
        assert (out / name).is_file(), name
    assert _history_epochs(out / "history.csv") == [0, 1]

    again = runner.invoke(fer, ["model", "train", "--data", str(tiny_data), "--out", str(out), "--epochs", "2"])
    assert again.exit_code == 1
    assert "already holds a training run" in again.output and "Traceback" not in again.output
    other = runner.invoke(fer, ["model", "train", "--data", str(tiny_data), "--out", str(out), "--epochs", "3", "--resume"])
    assert other.exit_code == 1
    assert "holds a run with epochs 2, not 3" in other.output

    card = json.loads((out / "card.json").read_text())
    assert card["recipe"] == "seed" and card["training"]["epochs"] == 2
    assert card["training"]["best_epoch"] in (1, 2)
    assert card["command"].startswith("fer model train") and "--resume" not in card["command"]
    assert set(card["metrics"]) == {"val", "test"}
    assert card["metrics"]["val"]["n"] == 21
    assert "## Metrics" in (out / "card.md").read_text()


def _train_command(data, out, *extra):
    return [sys.executable, "-m", "cli.main", "model", "train", "--recipe", "default", "--data", str(data),
            "--out", str(out), "--epochs", "6", *extra]


@pytest.mark.slow
def test_a_run_killed_mid_way_resumes_and_finishes_with_the_same_history(tmp_path):
    """SIGKILL after the second epoch's backup; --resume runs the remaining epochs once each, and the
    resumed history matches an uninterrupted run of the same seed."""
    write_image_folders(tmp_path / "data", per_class=12, layout="prefixed")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(REPO_ROOT)}
    killed, whole = tmp_path / "killed", tmp_path / "whole"
    process = subprocess.Popen(_train_command(tmp_path / "data", killed), env=env, cwd=REPO_ROOT,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    metadata = killed / "backup" / "training_metadata.json"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and process.poll() is None:
        if metadata.exists() and json.loads(metadata.read_text() or "{}").get("epoch", 0) >= 2:
            break
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    done_before_kill = json.loads(metadata.read_text())["epoch"]
    assert 2 <= done_before_kill < 6, "the run should have been killed part-way"
    assert not (killed / "model.keras").exists()

    resumed = subprocess.run(_train_command(tmp_path / "data", killed, "--resume"), env=env, cwd=REPO_ROOT,
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "epoch 1:" not in resumed.stdout and "epoch 6:" in resumed.stdout
    assert _history_epochs(killed / "history.csv") == [0, 1, 2, 3, 4, 5]
    assert json.loads((killed / "card.json").read_text())["training"]["epochs"] == 6

    uninterrupted = subprocess.run(_train_command(tmp_path / "data", whole), env=env, cwd=REPO_ROOT,
                                   capture_output=True, text=True, timeout=300)
    assert uninterrupted.returncode == 0, uninterrupted.stdout + uninterrupted.stderr
    for row_killed, row_whole in zip(read_history(killed / "history.csv"), read_history(whole / "history.csv")):
        assert row_killed["epoch"] == row_whole["epoch"]
        assert row_killed["learning_rate"] == pytest.approx(row_whole["learning_rate"])
        assert row_killed["loss"] == pytest.approx(row_whole["loss"], rel=1e-3)


@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.mark.slow
def test_card_has_per_class_and_flip_averaged_metrics_machine_and_comparisons(tiny_data, tmp_path):
    runner = CliRunner()
    first = runner.invoke(fer, ["model", "train", "--data", str(tiny_data), "--out", str(tmp_path / "a"), "--epochs", "1"])
    assert first.exit_code == 0, first.output
    second = runner.invoke(fer, ["model", "train", "--data", str(tiny_data), "--out", str(tmp_path / "b"), "--epochs", "1",
                                 "--compared-with", str(tmp_path / "a")])
    assert second.exit_code == 0, second.output
    card = json.loads((tmp_path / "b" / "card.json").read_text())
    first_card = json.loads((tmp_path / "a" / "card.json").read_text())
    assert card["comparisons"] == [{
        "recipe": "seed", "epochs": 1, "accuracy": first_card["metrics"]["val"]["accuracy"],
        "macro_f1": first_card["metrics"]["val"]["macro_f1"], "hours": first_card["training"]["hours"],
        "description": first_card["recipe_description"],
    }]
    assert "--compared-with" not in card["command"]
    val = card["metrics"]["val"]
    assert list(val["per_class_f1"]) == list(CLASSES)
    assert {"flip_tta_accuracy", "flip_tta_macro_f1"} <= set(val)
    assert re.search(r", \d+ cores?$", card["training"]["machine"])
    markdown = (tmp_path / "b" / "card.md").read_text()
    assert "## Recipe comparison" in markdown and "| `seed` | 1 |" in markdown
    assert "F1 disgust" in markdown

    missing = runner.invoke(fer, ["model", "train", "--data", str(tiny_data), "--out", str(tmp_path / "c"),
                                  "--compared-with", str(tmp_path)])
    assert missing.exit_code == 1 and "--compared-with: not a finished training run" in missing.output


@pytest.mark.slow
def test_a_flip_averaging_recipe_serves_and_reports_the_mean_over_mirror_images(tiny_data, tmp_path):
    from fer_model.registry import load_model, resolve_model
    from fer_model.flip_averaging import is_flip_averaged

    out = tmp_path / "run"
    runner = CliRunner()
    result = runner.invoke(fer, ["model", "train", "--recipe", "seed-flip", "--data", str(tiny_data), "--out", str(out),
                                 "--epochs", "1"])
    assert result.exit_code == 0, result.output
    assert is_flip_averaged(load_model(resolve_model(out)))
    card = json.loads((out / "card.json").read_text())
    val = card["metrics"]["val"]
    assert card["training"]["served_flip_averaged"] is True
    assert (val["accuracy"], val["macro_f1"]) == (val["flip_tta_accuracy"], val["flip_tta_macro_f1"])
    assert {"single_pass_accuracy", "single_pass_macro_f1"} <= set(val)
    assert "flip averaging, two passes" in (out / "card.md").read_text()

    evaluated = runner.invoke(fer, ["model", "evaluate", "--model", str(out), "--data", str(tiny_data),
                                    "--out", str(tmp_path / "evaluation")])
    assert evaluated.exit_code == 0, evaluated.output
    metrics = json.loads((tmp_path / "evaluation" / "metrics.json").read_text())
    assert metrics["served_flip_averaged"] is True
    assert metrics["single_pass"]["accuracy"] == pytest.approx(val["single_pass_accuracy"])
    printed = " ".join(evaluated.output.split())  # rich wraps long lines
    assert f"one pass of the network: accuracy {val['single_pass_accuracy']:.4f}" in printed


@pytest.mark.parametrize(("cores", "text"), [({0}, "1 core"), ({0, 1}, "2 cores")])
def test_the_machine_description_counts_the_cores_the_run_may_use(monkeypatch, cores, text):
    monkeypatch.setattr(training.os, "sched_getaffinity", lambda pid: cores, raising=False)
    assert training.machine_description().endswith(f", {text}")


def test_a_compared_run_without_recorded_hours_shows_a_dash():
    from fer_model.model_card import ModelCard, card_markdown

    card = ModelCard(name="m", recipe="seed", recipe_description="d", command="c", data={}, training={}, metrics={},
                     comparisons=[{"recipe": "seed", "epochs": 30, "accuracy": 0.64, "macro_f1": 0.63,
                                   "hours": float("nan"), "description": "old"},
                                  {"recipe": "seed-flip", "epochs": 40, "accuracy": 0.65, "macro_f1": 0.63,
                                   "hours": 1.591, "description": "new"}])
    markdown = card_markdown(card)
    assert "| `seed` | 30 | 0.6400 | 0.6300 | - | old |" in markdown
    assert "| `seed-flip` | 40 | 0.6500 | 0.6300 | 1.59 | new |" in markdown


@pytest.mark.slow
def test_runs_live_under_the_runs_folder_and_resume_from_their_packed_state(tiny_data, tmp_path, monkeypatch):
    import shutil

    from fer_model import run_folders

    monkeypatch.setenv("FER_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setattr(run_folders, "STATES_DIR", tmp_path / "states")
    runner = CliRunner()
    first = runner.invoke(fer, ["model", "train", "--data", str(tiny_data), "--epochs", "2"])
    assert first.exit_code == 0, first.output
    run = tmp_path / "runs" / "seed-1"
    assert (run / "model.keras").is_file()
    card = json.loads((run / "card.json").read_text())
    assert "--out" not in card["command"] and "--seed 1" in card["command"]

    packed = runner.invoke(fer, ["model", "pack-run", str(run)])
    assert packed.exit_code == 0, packed.output
    state = tmp_path / "states" / "seed-1.tar.xz"
    assert state.is_file() and "Packed" in packed.output

    shutil.rmtree(run)  # a fresh machine: only the packed state is left
    resumed = runner.invoke(fer, ["model", "train", "--data", str(tiny_data), "--epochs", "2", "--resume"])
    assert resumed.exit_code == 0, resumed.output
    assert "Unpacked the run's packed state" in resumed.output
    assert _history_epochs(run / "history.csv") == [0, 1]  # nothing trained twice
    assert (run / "model.keras").is_file()
    assert not state.exists()  # a finished run forgets its packed state

    empty = tmp_path / "empty"
    empty.mkdir()
    refused = runner.invoke(fer, ["model", "pack-run", str(empty)])
    assert refused.exit_code == 1 and "holds no training run" in refused.output
    assert "Traceback" not in refused.output


@pytest.mark.slow
def test_a_bfloat16_run_saves_a_float32_model_and_resumes_only_in_bfloat16(tiny_data, tmp_path):
    import keras

    from fer_model.registry import load_model, resolve_model

    out = tmp_path / "bf16"
    runner = CliRunner()
    result = runner.invoke(fer, ["model", "train", "--data", str(tiny_data), "--out", str(out), "--epochs", "1",
                                 "--precision", "mixed_bfloat16"])
    assert result.exit_code == 0, result.output
    assert keras.mixed_precision.dtype_policy().name == "float32"  # the process's policy is restored
    model = load_model(resolve_model(out))
    policies = {layer.dtype_policy.name for layer in model._flatten_layers(include_self=False, recursive=True)}
    assert policies == {"float32"}
    card = json.loads((out / "card.json").read_text())
    assert card["training"]["precision"] == "mixed_bfloat16" and "--precision mixed_bfloat16" in card["command"]
    assert json.loads((out / "run.json").read_text())["precision"] == "mixed_bfloat16"
    other = runner.invoke(fer, ["model", "train", "--data", str(tiny_data), "--out", str(out), "--epochs", "1", "--resume"])
    assert other.exit_code == 1 and "precision 'mixed_bfloat16', not None" in other.output


def test_every_committed_card_md_is_what_its_card_json_renders():
    from fer_model.model_card import CARD_JSON, CARD_MARKDOWN, card_markdown, read_card
    from fer_model.registry import MODELS_DIR

    folders = [path.parent for path in sorted(MODELS_DIR.glob(f"*/{CARD_JSON}"))]
    assert folders, f"no committed cards under {MODELS_DIR}"
    for folder in folders:
        assert (folder / CARD_MARKDOWN).read_text() == card_markdown(read_card(folder)), folder.name
