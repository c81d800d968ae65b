"""Evaluate a model on a FER2013 split and write the full report into a folder.

Files: metrics.json, classification_report.txt, confusion_matrix.png, misclassified.png,
correct.png, reliability_diagram.png, training_curves.png (when the model's history.csv is
known) and report.md. Metrics are for the model as served (calibrated when it carries a
temperature, flip-averaged when it averages over mirror images itself, through its int8 graph
for a NAME-int8 model); one pass of the network, flip averaging and calibration are reported
beside them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np

from fer_model.data import SPLIT_TITLES, Dataset
from fer_model.calibration import baked_temperature, expected_calibration_error, reliability_bins, rescale
from fer_model.ensemble import is_ensemble
from fer_model.training import read_history
from fer_model.evaluation import predict_probabilities, flip_choices
from fer_model.figures import confusion_matrix_figure, face_grid_figure, reliability_figure, training_curves_figure
from fer_model.metrics import compute_metrics, report_text
from fer_model.registry import ModelRef, load_model
from fer_model.flip_averaging import is_flip_averaged
from fer_model.quantization import graph_probabilities, int8_session
from fer_model.served_graph import INT8

GRID_SIZE = 32


@dataclass
class EvaluationResult:
    metrics: dict[str, Any]
    files: list[Path]
    note: str | None


def evaluate_model(
    ref: ModelRef, dataset: Dataset, requested_split: str, out: Path, *, seed: int = 0
) -> EvaluationResult:
    split_name, note = dataset.evaluation_split(requested_split)
    split = dataset[split_name]
    model = load_model(ref)
    members = sum(isinstance(layer, keras.Model) for layer in model.layers) if is_ensemble(model) else 0
    if ref.precision == INT8:  # the int8 graph as the workers serve it; the float model gives only its settings
        probabilities = graph_probabilities(int8_session(ref.path), split.images)
        alternatives = {}
    elif members:  # each member serves its own test-time choice
        probabilities = predict_probabilities(model, split.images)
        alternatives = {}
    else:
        choices = flip_choices(model, split.images)
        probabilities = choices.served
        alternatives = {"flip_tta": choices.flip_averaged, "single_pass": choices.one_pass}
    metrics = compute_metrics(split.labels, probabilities, split_name)
    metrics["split_title"] = SPLIT_TITLES[split_name]
    metrics["model"] = {"name": ref.name, "path": str(ref.path)}
    metrics["served_flip_averaged"] = is_flip_averaged(model)
    metrics["ensemble_members"] = members
    metrics["precision"] = ref.precision
    for name, alternative in alternatives.items():
        figures = compute_metrics(split.labels, alternative, split_name)
        metrics[name] = {key: figures[key] for key in ("accuracy", "macro_f1", "weighted_f1")}
    temperature = baked_temperature(model)
    raw = rescale(probabilities, 1 / temperature)
    metrics["calibration"] = {
        "temperature": temperature,
        "ece_uncalibrated": expected_calibration_error(raw, split.labels),
        "ece": expected_calibration_error(probabilities, split.labels),
    }
    if note:
        metrics["note"] = note

    out.mkdir(parents=True, exist_ok=True)
    files: list[Path] = []

    def output(name: str) -> Path:
        files.append(out / name)
        return out / name

    output("metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    output("classification_report.txt").write_text(report_text(split.labels, probabilities))
    title = f"{ref.name} on {SPLIT_TITLES[split_name]}"
    confusion_matrix_figure(np.array(metrics["confusion_matrix"]), output("confusion_matrix.png"), title)

    curves = {"as served": reliability_bins(probabilities, split.labels)}
    if temperature != 1.0:
        curves = {"uncalibrated (T = 1)": reliability_bins(raw, split.labels), f"served (T = {temperature:.2f})": curves["as served"]}
    reliability_figure(curves, output("reliability_diagram.png"), f"{title}: reliability")

    predicted = probabilities.argmax(axis=1)
    confidence = probabilities.max(axis=1)
    rng = np.random.default_rng(seed)
    for name, mask, caption in (
        ("misclassified.png", predicted != split.labels, "misclassified"),
        ("correct.png", predicted == split.labels, "correctly classified"),
    ):
        chosen = _sample(np.flatnonzero(mask), rng)
        face_grid_figure(
            split.images[chosen], split.labels[chosen], predicted[chosen], confidence[chosen],
            output(name), f"{title}: {caption} (random {len(chosen)} of {int(mask.sum())})",
        )

    history_path = ref.folder / "history.csv"
    if history_path.is_file():
        training_curves_figure(read_history(history_path), output("training_curves.png"))
    output("report.md").write_text(_report_markdown(metrics, [f.name for f in files], title))
    return EvaluationResult(metrics=metrics, files=files, note=note)


def _sample(indices: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    if len(indices) <= GRID_SIZE:
        return indices
    return np.sort(rng.choice(indices, size=GRID_SIZE, replace=False))


def _report_markdown(metrics: dict[str, Any], files: list[str], title: str) -> str:
    lines = [f"# Evaluation: {title}", ""]
    if "note" in metrics:
        lines += [f"> {metrics['note']}", ""]
    lines += [
        "| n | accuracy | macro F1 | weighted F1 | balanced accuracy |",
        "|---|---|---|---|---|",
        f"| {metrics['n']} | {metrics['accuracy']:.4f} | {metrics['macro_f1']:.4f} | "
        f"{metrics['weighted_f1']:.4f} | {metrics['balanced_accuracy']:.4f} |",
        "",
        flip_summary(metrics) + ".",
        "",
        "## Calibration",
        "",
        f"Temperature {metrics['calibration']['temperature']:.3f}; expected calibration error "
        f"{metrics['calibration']['ece_uncalibrated']:.4f} uncalibrated, {metrics['calibration']['ece']:.4f} as served "
        "(15 equal-width confidence bins).",
        "",
        "![reliability diagram](reliability_diagram.png)",
        "",
        "## Per class",
        "",
        "| class | precision | recall | F1 | support |",
        "|---|---|---|---|---|",
        *[
            f"| {name} | {m['precision']:.4f} | {m['recall']:.4f} | {m['f1']:.4f} | {m['support']} |"
            for name, m in metrics["per_class"].items()
        ],
        "",
        "Full report: [classification_report.txt](classification_report.txt)",
        "",
        "## Confusion matrix",
        "",
        "![confusion matrix](confusion_matrix.png)",
        "",
        "## Misclassified faces",
        "",
        "![misclassified](misclassified.png)",
        "",
        "## Correctly classified faces",
        "",
        "![correct](correct.png)",
        "",
    ]
    if "training_curves.png" in files:
        lines += ["## Training curves", "", "![training curves](training_curves.png)", ""]
    return "\n".join(lines)


def flip_summary(metrics: dict[str, Any]) -> str:
    """One sentence on test-time augmentation: what the served model does, and the other choice's figures."""
    int8 = " (int8 graph)" if metrics.get("precision") == INT8 else ""
    if metrics.get("ensemble_members"):
        return f"An ensemble of {metrics['ensemble_members']} members, each serving its own test-time choice{int8}"
    if int8:
        return f"Served through its int8 graph{', flip-averaged' if metrics['served_flip_averaged'] else ''}"
    if metrics["served_flip_averaged"]:
        one = metrics["single_pass"]
        return (
            "Served flip-averaged (each face and its mirror image); one pass of the network: "
            f"accuracy {one['accuracy']:.4f}, macro F1 {one['macro_f1']:.4f}"
        )
    tta = metrics["flip_tta"]
    return f"With flip TTA: accuracy {tta['accuracy']:.4f}, macro F1 {tta['macro_f1']:.4f}"
