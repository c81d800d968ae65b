"""Evaluation figures (matplotlib, no display needed)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from fer_model.calibration import ReliabilityBins  # noqa: E402
from fer_model.classes import CLASSES  # noqa: E402


def confusion_matrix_figure(matrix: np.ndarray, path: Path, title: str) -> None:
    """Counts on the left, row-normalised (recall per true class) on the right."""
    matrix = np.asarray(matrix)
    rows = matrix.sum(axis=1, keepdims=True)
    normalised = np.divide(matrix, rows, out=np.zeros(matrix.shape, dtype=float), where=rows > 0)
    figure, axes = plt.subplots(1, 2, figsize=(15, 6.5))
    for axis, values, fmt, name in ((axes[0], matrix, "d", "counts"), (axes[1], normalised, ".2f", "row-normalised")):
        image = axis.imshow(values, cmap="Blues")
        figure.colorbar(image, ax=axis, fraction=0.046)
        axis.set_xticks(range(len(CLASSES)), CLASSES, rotation=45, ha="right")
        axis.set_yticks(range(len(CLASSES)), CLASSES)
        axis.set_xlabel("predicted")
        axis.set_ylabel("true")
        axis.set_title(f"{title}: {name}")
        threshold = values.max() / 2 if values.size else 0
        for i in range(values.shape[0]):
            for j in range(values.shape[1]):
                axis.text(
                    j, i, format(values[i, j], fmt), ha="center", va="center",
                    color="white" if values[i, j] > threshold else "black", fontsize=8,
                )
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def face_grid_figure(
    faces: np.ndarray,
    true_labels: np.ndarray,
    predicted: np.ndarray,
    confidence: np.ndarray,
    path: Path,
    title: str,
    columns: int = 8,
) -> None:
    """A grid of faces captioned 'true / predicted (confidence)'."""
    count = len(faces)
    rows = max(1, int(np.ceil(count / columns)))
    figure, axes = plt.subplots(rows, columns, figsize=(columns * 1.6, rows * 1.9 + 0.6), squeeze=False)
    for index, axis in enumerate(axes.flat):
        axis.axis("off")
        if index >= count:
            continue
        axis.imshow(faces[index].squeeze(), cmap="gray", vmin=0, vmax=255)
        wrong = true_labels[index] != predicted[index]
        axis.set_title(
            f"true {CLASSES[true_labels[index]]}\npred {CLASSES[predicted[index]]} {confidence[index]:.2f}",
            fontsize=7,
            color="firebrick" if wrong else "darkgreen",
        )
    if count == 0:
        axes.flat[0].text(0.5, 0.5, "none", ha="center", va="center")
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def training_curves_figure(history: list[dict[str, float]], path: Path) -> None:
    """Loss and accuracy per epoch, train against validation."""
    epochs = [row["epoch"] for row in history]
    figure, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for axis, metric in zip(axes, ("loss", "accuracy")):
        axis.plot(epochs, [row.get(metric, np.nan) for row in history], label="train")
        if any(f"val_{metric}" in row for row in history):
            axis.plot(epochs, [row.get(f"val_{metric}", np.nan) for row in history], label="validation (PublicTest)")
        axis.set_xlabel("epoch")
        axis.set_title(metric)
        axis.grid(alpha=0.3)
        axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def reliability_figure(curves: dict[str, ReliabilityBins], path: Path, title: str) -> None:
    """Accuracy against confidence per bin for each named set of probabilities; the diagonal is perfect calibration."""
    figure, (axis, counts_axis) = plt.subplots(
        2, 1, figsize=(6.5, 7.5), sharex=True, gridspec_kw={"height_ratios": [3, 1]}
    )
    axis.plot([0, 1], [0, 1], color="gray", linestyle="--", label="perfect calibration")
    for (name, bins), marker in zip(curves.items(), "os^"):
        filled = bins.counts > 0
        axis.plot(bins.confidence[filled], bins.accuracy[filled], marker=marker, label=name)
        centres = (bins.edges[:-1] + bins.edges[1:]) / 2
        counts_axis.step(centres, bins.counts, where="mid", label=name)
    axis.set_ylabel("accuracy")
    axis.set_xlim(0, 1)
    axis.set_ylim(0, 1)
    axis.set_title(title)
    axis.grid(alpha=0.3)
    axis.legend(loc="upper left", fontsize=8)
    counts_axis.set_xlabel("confidence (top probability)")
    counts_axis.set_ylabel("faces")
    counts_axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
