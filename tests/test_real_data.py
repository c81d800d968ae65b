"""Integration tests on ../shared/data (or FER_DATA_DIR); skipped cleanly when it is absent."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from cli.main import fer
from fer_model.data import load_fer2013
from fer_model.registry import resolve_model

# Real photos, real servers or whole benchmark runs: the full suite (`make test`), not the fast lane.
pytestmark = pytest.mark.slow

TRAIN_COUNTS = {"angry": 3995, "disgust": 436, "fear": 4097, "happy": 7215, "neutral": 4965, "sad": 4830, "surprise": 3171}
PUBLIC_TEST_COUNTS = {"angry": 467, "disgust": 56, "fear": 496, "happy": 895, "neutral": 607, "sad": 653, "surprise": 415}
EVALUATION_FILES = (
    "metrics.json",
    "classification_report.txt",
    "confusion_matrix.png",
    "misclassified.png",
    "correct.png",
    "training_curves.png",
    "report.md",
)


@pytest.fixture(scope="module")
def shared_dataset(fer2013_dir):
    return load_fer2013(fer2013_dir)


def test_exact_split_counts(shared_dataset):
    assert shared_dataset["train"].class_counts() == TRAIN_COUNTS
    assert shared_dataset["val"].class_counts() == PUBLIC_TEST_COUNTS
    assert len(shared_dataset["test"]) == 0  # PrivateTest is withheld from this copy
    assert all("Training_" in s for s in shared_dataset["train"].sources[:50])
    assert all("PublicTest_" in s for s in shared_dataset["val"].sources[:50])


def test_one_epoch_training_smoke_run_on_a_subset(fer2013_dir, tmp_path):
    out = tmp_path / "run"
    result = CliRunner().invoke(
        fer,
        ["model", "train", "--data", str(fer2013_dir), "--out", str(out), "--epochs", "1", "--limit", "300"],
    )
    assert result.exit_code == 0, result.output
    card = json.loads((out / "card.json").read_text())
    assert card["data"]["train_images"] == 300
    assert card["metrics"]["val"]["n"] == 3589


@pytest.mark.parametrize("model_name", ["seed", "seed-flip", "default"])
def test_committed_models_reproduce_their_cards_on_public_test(fer2013_dir, tmp_path, model_name):
    ref = resolve_model(model_name)
    out = tmp_path / "eval"
    result = CliRunner().invoke(
        fer,
        ["model", "evaluate", "--model", model_name, "--data", str(fer2013_dir), "--split", "val", "--out", str(out)],
    )
    assert result.exit_code == 0, result.output
    for name in EVALUATION_FILES:
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["split"] == "val" and metrics["n"] == 3589
    assert abs(metrics["accuracy"] - ref.card.metrics["val"]["accuracy"]) <= 0.005
    assert abs(metrics["macro_f1"] - ref.card.metrics["val"]["macro_f1"]) <= 0.005
    assert metrics["weighted_f1"] >= 0.63
