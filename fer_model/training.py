"""Train a recipe on FER2013 with per-epoch checkpoints, history and resume.

Layout of an output folder:
- ``checkpoint.keras`` / ``state.json``: the last finished epoch (model and optimiser), for ``resume``;
- ``best.keras``: the epoch with the best validation (PublicTest) accuracy so far;
- ``history.csv``: one row per epoch;
- ``model.keras`` and ``card.json`` / ``card.md``: the final model (best epoch, no optimiser) and its card.
"""

from __future__ import annotations

import csv
import json
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import keras
import numpy as np

from fer_model.calibration import calibration_summary, with_temperature
from fer_model.classes import CLASSES
from fer_model.data import Dataset, Split
from fer_model.evaluation import predict_probabilities
from fer_model.metrics import compute_metrics
from fer_model.model_card import ModelCard, write_card
from fer_model.recipes import Recipe

SELECTION_NOTE = (
    "The saved weights are those of the epoch with the best PublicTest (val) accuracy, so PublicTest "
    "figures are slightly optimistic; the withheld PrivateTest split is the unbiased check."
)
HISTORY_FIELDS = ("epoch", "loss", "accuracy", "val_loss", "val_accuracy", "learning_rate", "seconds")


class TrainingError(Exception):
    """Training cannot start or resume; the message says why."""


class TrainingProgress(Protocol):
    """What the caller (the CLI) hears while training runs. Library code never prints."""

    def epoch_started(self, epoch: int, epochs: int, steps: int) -> None: ...

    def batch_done(self, step: int, logs: dict[str, float]) -> None: ...

    def epoch_done(self, epoch: int, logs: dict[str, float]) -> None: ...


@dataclass
class TrainingRun:
    recipe: Recipe
    out: Path
    epochs: int
    seed: int = 1
    resume: bool = False
    class_weights: bool = False
    command: str = ""
    data_description: dict[str, Any] = field(default_factory=dict)


@dataclass
class TrainingResult:
    model_path: Path
    card: ModelCard
    epochs_run: int


def oversampled_indices(labels: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """All indices once, plus random repeats of each class up to ``fraction`` of the largest class.

    The repeats differ from their originals through the model's augmentation layers.
    """
    counts = np.bincount(labels, minlength=len(CLASSES))
    target = int(math.ceil(fraction * counts.max()))
    parts = [np.arange(len(labels))]
    for class_index, count in enumerate(counts):
        if 0 < count < target:
            members = np.flatnonzero(labels == class_index)
            parts.append(rng.choice(members, size=target - count, replace=True))
    indices = np.concatenate(parts)
    rng.shuffle(indices)
    return indices


def balanced_class_weights(labels: np.ndarray) -> dict[int, float]:
    counts = np.bincount(labels, minlength=len(CLASSES)).astype(float)
    present = counts > 0
    weights = np.zeros_like(counts)
    weights[present] = len(labels) / (present.sum() * counts[present])
    return {i: float(w) for i, w in enumerate(weights)}


def cosine_learning_rate(base: float, epoch: int, epochs: int, floor: float = 0.02) -> float:
    """Cosine decay from ``base`` to ``floor * base``; a function of the epoch alone, so resume is exact."""
    progress = epoch / max(epochs, 1)
    return base * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress)))


def as_model_input(images: np.ndarray) -> np.ndarray:
    """(N, 48, 48) or (N, 48, 48, 1) uint8 faces as the float32 batch Keras fits on."""
    if images.ndim == 3:
        images = images[..., np.newaxis]
    return images.astype(np.float32)


def train(
    run: TrainingRun,
    dataset: Dataset,
    *,
    progress: TrainingProgress | None = None,
    train_subset: Sequence[int] | None = None,
) -> TrainingResult:
    """Train ``run.recipe`` on ``dataset``'s train split, validating on PublicTest (``val``)."""
    train_split = dataset["train"] if train_subset is None else dataset["train"].subset(np.asarray(train_subset))
    if len(train_split) == 0:
        raise TrainingError(f"{dataset.source}: the train split is empty")
    val_split = dataset["val"] if dataset.has("val") else None
    out = run.out
    out.mkdir(parents=True, exist_ok=True)
    state_path, checkpoint_path, best_path = out / "state.json", out / "checkpoint.keras", out / "best.keras"

    start_epoch, best_accuracy, best_epoch = 0, -1.0, 0
    if run.resume and state_path.exists() and checkpoint_path.exists():
        state = json.loads(state_path.read_text())
        if state.get("recipe") != run.recipe.name:
            raise TrainingError(f"{out} holds a run of recipe {state.get('recipe')!r}, not {run.recipe.name!r}")
        start_epoch, best_accuracy, best_epoch = state["epochs_done"], state["best_accuracy"], state["best_epoch"]
        model = keras.saving.load_model(checkpoint_path)
    elif not run.resume and state_path.exists():
        raise TrainingError(f"{out} already holds a training run: pass --resume to continue it, or choose another --out")
    else:
        keras.utils.set_random_seed(run.seed)
        model = run.recipe.build(run.seed)
        model.compile(optimizer=run.recipe.make_optimizer(), loss=run.recipe.make_loss(), metrics=["accuracy"])
    _truncate_history(out / "history.csv", start_epoch)

    base_rate = float(keras.ops.convert_to_numpy(run.recipe.make_optimizer().learning_rate))
    class_weight = balanced_class_weights(train_split.labels) if run.class_weights else None
    validation = (
        (as_model_input(val_split.images), keras.utils.to_categorical(val_split.labels, len(CLASSES)))
        if val_split is not None
        else None
    )
    train_images = train_split.images

    for epoch in range(start_epoch, run.epochs):
        rng = np.random.default_rng([run.seed, epoch])
        keras.utils.set_random_seed(run.seed * 100_003 + epoch)
        indices = oversampled_indices(train_split.labels, run.recipe.oversample_to, rng)
        x = as_model_input(train_images[indices])
        y = keras.utils.to_categorical(train_split.labels[indices], len(CLASSES))
        rate = cosine_learning_rate(base_rate, epoch, run.epochs)
        model.optimizer.learning_rate.assign(rate)
        steps = math.ceil(len(indices) / run.recipe.batch_size)
        callbacks = [_ProgressCallback(progress, epoch, run.epochs, steps)] if progress else []
        started = time.monotonic()
        history = model.fit(
            x,
            y,
            batch_size=run.recipe.batch_size,
            epochs=epoch + 1,
            initial_epoch=epoch,
            validation_data=validation,
            class_weight=class_weight,
            shuffle=False,
            verbose=0,
            callbacks=callbacks,
        )
        logs = {key: float(values[-1]) for key, values in history.history.items()}
        logs.update(epoch=epoch + 1, learning_rate=rate, seconds=round(time.monotonic() - started, 1))
        _append_history(out / "history.csv", logs)

        accuracy = logs.get("val_accuracy", logs["accuracy"])
        if accuracy > best_accuracy:
            best_accuracy, best_epoch = accuracy, epoch + 1
            save_atomically(model, best_path)
        save_atomically(model, checkpoint_path)
        _write_json_atomically(
            state_path,
            {
                "recipe": run.recipe.name,
                "epochs_done": epoch + 1,
                "epochs": run.epochs,
                "best_accuracy": best_accuracy,
                "best_epoch": best_epoch,
                "seed": run.seed,
            },
        )
        if progress:
            progress.epoch_done(epoch + 1, logs)

    return _finish(run, dataset, best_path, best_epoch, val_split, train_split)


def _finish(
    run: TrainingRun, dataset: Dataset, best_path: Path, best_epoch: int, val_split: Split | None, train_split: Split
) -> TrainingResult:
    """Save the best epoch's weights into a fresh (optimiser-free) model and write its card."""
    trained = keras.saving.load_model(best_path)
    model = run.recipe.build(run.seed)
    model.set_weights(trained.get_weights())
    calibration: dict[str, Any] = {}
    if val_split is not None and len(val_split):
        calibration = calibration_summary(predict_probabilities(model, val_split.images), val_split.labels)
        model = with_temperature(model, calibration["temperature"])
    model_path = run.out / "model.keras"
    save_atomically(model, model_path)

    metrics: dict[str, Any] = {}
    for split_name in ("val", "test"):
        if dataset.has(split_name):
            split = dataset[split_name]
            probabilities = predict_probabilities(model, split.images)
            full = compute_metrics(split.labels, probabilities, split_name)
            metrics[split_name] = {k: full[k] for k in ("n", "accuracy", "macro_f1", "weighted_f1", "balanced_accuracy")}

    card = ModelCard(
        name=run.recipe.name,
        recipe=run.recipe.name,
        recipe_description=run.recipe.description,
        command=run.command,
        data={
            **run.data_description,
            "train_images": len(train_split),
            "val_images": len(val_split) if val_split is not None else 0,
            "test_images": len(dataset["test"]),
        },
        training={
            "epochs": run.epochs,
            "best_epoch": best_epoch,
            "seed": run.seed,
            "batch_size": run.recipe.batch_size,
            "class_weights": run.class_weights,
            "oversample_to": run.recipe.oversample_to,
            "label_smoothing": run.recipe.label_smoothing,
            "backend": keras.backend.backend(),
            "keras_version": keras.__version__,
        },
        metrics=metrics,
        calibration=calibration,
        notes=[SELECTION_NOTE],
    )
    write_card(run.out, card, model_path)
    return TrainingResult(model_path=model_path, card=card, epochs_run=run.epochs)


class _ProgressCallback(keras.callbacks.Callback):
    def __init__(self, progress: TrainingProgress, epoch: int, epochs: int, steps: int):
        super().__init__()
        self.progress, self.epoch, self.epochs, self.steps = progress, epoch, epochs, steps

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self.progress.epoch_started(self.epoch + 1, self.epochs, self.steps)

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        self.progress.batch_done(batch + 1, {k: float(v) for k, v in (logs or {}).items()})


def save_atomically(model: keras.Model, path: Path) -> None:
    partial = path.with_name(f".{path.stem}.partial.keras")
    model.save(partial)
    os.replace(partial, path)


def _write_json_atomically(path: Path, content: dict) -> None:
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(json.dumps(content, indent=2) + "\n")
    os.replace(partial, path)


def _append_history(path: Path, logs: dict[str, float]) -> None:
    new = not path.exists()
    with path.open("a", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=HISTORY_FIELDS, extrasaction="ignore")
        if new:
            writer.writeheader()
        writer.writerow({key: logs.get(key, "") for key in HISTORY_FIELDS})


def _truncate_history(path: Path, epochs_done: int) -> None:
    """Drop history rows past the checkpoint (an epoch that was interrupted after logging)."""
    if not path.exists():
        return
    with path.open(newline="") as handle:
        rows = [row for row in csv.DictReader(handle) if int(row["epoch"]) <= epochs_done]
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=HISTORY_FIELDS)
        writer.writeheader()
        writer.writerows(rows)


def read_history(path: Path) -> list[dict[str, float]]:
    with path.open(newline="") as handle:
        return [{k: float(v) for k, v in row.items() if v != ""} for row in csv.DictReader(handle)]
