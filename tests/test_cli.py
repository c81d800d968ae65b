"""The `fer` command line: help, evaluation output, and clear errors without tracebacks."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from cli.main import fer
from fer_model.registry import default_model_name
from tests.conftest import write_image_folders


def _listed_commands(output: str) -> list[str]:
    listed = output.split("Commands:\n", 1)[1]
    return [line.split()[0] for line in listed.splitlines() if line.startswith("  ") and not line.startswith("   ")]


def test_help_lists_the_commands():
    result = CliRunner().invoke(fer, ["--help"])
    assert result.exit_code == 0
    assert _listed_commands(result.output) == [
        "annotate", "beat", "cancel", "db", "export", "model", "query", "report", "retry", "schedule", "status",
        "submit", "worker",
    ]
    result = CliRunner().invoke(fer, ["model", "--help"])
    assert _listed_commands(result.output) == ["calibrate", "ensemble", "evaluate", "list", "pack-run", "quantize", "soft-labels", "train"]


def test_model_list_shows_committed_models_with_card_metrics():
    result = CliRunner().invoke(fer, ["model", "list", "--format", "json"])
    assert result.exit_code == 0, result.output
    rows = {row["name"]: row for row in json.loads(result.output)}
    assert "seed" in rows and rows["seed"]["val_weighted_f1"] >= 0.63
    assert [row["name"] for row in rows.values() if row["default"]] == [default_model_name()]
    assert rows["seed"]["ece"] < 0.05


def test_default_names_the_model_in_the_pointer_file(tmp_path, monkeypatch):
    from fer_model import registry

    pointed = registry.DEFAULT_POINTER.read_text().strip()
    assert registry.resolve_model("default") == registry.resolve_model(pointed)
    models = tmp_path / "models"
    for name in ("one", "two"):
        (models / name).mkdir(parents=True)
        (models / name / "model.keras").write_bytes(b"")
    (models / "DEFAULT").write_text("two\n")
    monkeypatch.setattr(registry, "MODELS_DIR", models)
    monkeypatch.setattr(registry, "DEFAULT_POINTER", models / "DEFAULT")
    assert registry.resolve_model("default").path == (models / "two" / "model.keras").resolve()


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    write_image_folders(root / "data", per_class=3, layout="prefixed")
    result = CliRunner().invoke(
        fer, ["model", "train", "--data", str(root / "data"), "--out", str(root / "run"), "--epochs", "1"]
    )
    assert result.exit_code == 0, result.output
    return root


@pytest.mark.slow
@pytest.mark.parametrize(("split", "expected_split"), [("val", "val"), ("test", "test")])
def test_evaluate_writes_every_report_file(trained_run, tmp_path, split, expected_split):
    out = tmp_path / "eval"
    result = CliRunner().invoke(
        fer,
        ["model", "evaluate", "--model", str(trained_run / "run"), "--data", str(trained_run / "data"),
         "--split", split, "--out", str(out)],
    )
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["split"] == expected_split and metrics["n"] == 21
    assert {"accuracy", "macro_f1", "weighted_f1", "balanced_accuracy", "classes", "per_class", "confusion_matrix"} <= set(metrics)
    assert len(metrics["confusion_matrix"]) == 7 and sum(map(sum, metrics["confusion_matrix"])) == 21
    assert metrics["per_class"]["happy"]["support"] == 3
    for name in ("classification_report.txt", "confusion_matrix.png", "misclassified.png", "correct.png",
                 "reliability_diagram.png", "training_curves.png", "report.md"):
        assert (out / name).is_file(), name
    assert "weighted F1" in result.output and "With flip TTA" in result.output
    from fer_model.data import load_fer2013
    from fer_model.evaluation import flip_averaged_probabilities
    from fer_model.registry import load_model, resolve_model

    faces = load_fer2013(trained_run / "data")[expected_split]
    flipped = flip_averaged_probabilities(load_model(resolve_model(trained_run / "run")), faces.images)
    assert metrics["flip_tta"]["accuracy"] == pytest.approx(float((flipped.argmax(axis=1) == faces.labels).mean()))
    # The trained run carries the temperature fitted on its PublicTest split.
    assert metrics["calibration"]["temperature"] != 1.0
    assert metrics["calibration"]["ece"] != metrics["calibration"]["ece_uncalibrated"]
    assert "## Calibration" in (out / "report.md").read_text()


@pytest.mark.slow
def test_evaluate_on_withheld_private_test_falls_back_and_says_so(trained_run, tmp_path):
    data = tmp_path / "public-only"
    write_image_folders(data, per_class=1, layout="prefixed")
    for file in data.rglob("PrivateTest_*"):
        file.unlink()
    out = tmp_path / "eval"
    result = CliRunner().invoke(
        fer, ["model", "evaluate", "--model", str(trained_run / "run"), "--data", str(data), "--split", "test", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert "PrivateTest" in result.output and "absent" in result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["split"] == "val" and "absent" in metrics["note"]


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["model", "evaluate", "--model", "no-such-model", "--data", "{data}", "--out", "{out}"], "no model at no-such-model"),
        (["model", "evaluate", "--model", "{run}", "--data", "{missing}", "--out", "{out}"], "no such file or directory"),
        (["model", "train", "--data", "{missing}", "--out", "{out}"], "no such file or directory"),
    ],
)
@pytest.mark.slow
def test_errors_are_clear_and_exit_non_zero(trained_run, tmp_path, arguments, message):
    values = {"run": str(trained_run / "run"), "data": str(trained_run / "data"), "out": str(tmp_path / "out"), "missing": str(tmp_path / "missing")}
    result = CliRunner().invoke(fer, [a.format(**values) for a in arguments])
    assert result.exit_code == 1
    assert message in result.output and "Traceback" not in result.output


@pytest.mark.slow
def test_damaged_model_file_and_unwritable_out_are_clear_errors(trained_run, tmp_path):
    damaged = tmp_path / "damaged.keras"
    damaged.write_bytes(b"not a zip")
    data = str(trained_run / "data")
    result = CliRunner().invoke(fer, ["model", "evaluate", "--model", str(damaged), "--data", data, "--out", str(tmp_path / "o")])
    assert result.exit_code == 1 and "not a loadable Keras model" in result.output

    blocker = tmp_path / "a-file"
    blocker.write_text("")
    result = CliRunner().invoke(
        fer, ["model", "evaluate", "--model", str(trained_run / "run"), "--data", data, "--out", str(blocker / "sub")]
    )
    assert result.exit_code == 1 and "cannot write to" in result.output and "Traceback" not in result.output
