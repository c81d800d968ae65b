"""Train a recipe on FER2013 with one `model.fit` and Keras's own callbacks.

Layout of a run folder:
- ``run.json``: the run's settings (recipe, epochs, seed, class weights), checked on ``--resume``;
- ``backup/``: `keras.callbacks.BackupAndRestore`'s state (weights, optimiser, epoch), written after
  every epoch, so a killed run resumes at the start of the epoch it was in;
- ``best.keras``: the epoch with the best validation (PublicTest) accuracy so far (`ModelCheckpoint`);
- ``history.csv``: one row per finished epoch (`CSVLogger`, appended on resume);
- ``model.keras`` and ``card.json`` / ``card.md``: the final model (best epoch, calibrated, no optimiser)
  and its card; ``model.onnx``: the same served model as one ONNX graph (`fer_model.onnx_export`);
- ``soft_labels.npz``: the final model's probabilities for every Training and PublicTest face
  (`fer_model.soft_labels`), for ensembles and distillation.

The oversampled training epoch is re-drawn every epoch from ``(seed, epoch)`` alone, and the
learning rate is a function of the optimiser's step count, so a resumed run sees the same data and
schedule as one that never stopped.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import keras
import numpy as np

from fer_model.calibration import calibration_summary, with_temperature
from fer_model.classes import CLASSES
from fer_model.data import Dataset, Split
from fer_model.ensemble import is_ensemble
from fer_model.evaluation import predict_probabilities, flip_choices
from fer_model.files import write_atomically
from fer_model.metrics import compute_metrics
from fer_model.onnx_export import save_served_model
from fer_model.model_card import ModelCard, write_card
from fer_model.faces import as_model_batch
from fer_model.recipes import Recipe
from fer_model.distillation import DistillationLoss, accuracy_metric, distillation_targets
from fer_model.soft_labels import SoftLabelError, model_soft_labels, read_soft_labels, write_soft_labels

SELECTION_NOTE = (
    "The saved weights are those of the epoch with the best PublicTest (val) accuracy, so PublicTest "
    "figures are slightly optimistic; the withheld PrivateTest split is the unbiased check."
)
RUN_FILE = "run.json"
HISTORY_FILE = "history.csv"
BEST_FILE = "best.keras"
BACKUP_FOLDER = "backup"


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
    # "mixed_bfloat16" trains in bfloat16 with float32 weights (about 1.8x faster on CPUs with AVX-512 BF16);
    # the saved model always computes in float32.
    precision: str = "float32"
    train_limit: int | None = None  # train on a random subset of this many images (smoke runs)
    # Knowledge distillation: a folder whose soft_labels.npz the student learns from, and the loss's settings.
    teacher: Path | None = None
    distill_temperature: float = 4.0
    distill_weight: float = 0.7
    command: str = ""
    data_description: dict[str, Any] = field(default_factory=dict)
    comparisons: list[dict[str, Any]] = field(default_factory=list)

    def settings(self) -> dict[str, Any]:
        settings = {"recipe": self.recipe.name, "epochs": self.epochs, "seed": self.seed, "class_weights": self.class_weights}
        if self.train_limit is not None:
            settings["train_limit"] = self.train_limit
        if self.precision != "float32":
            settings["precision"] = self.precision
        if self.teacher is not None:
            settings["teacher"] = self.teacher.name
            settings["distill_temperature"] = self.distill_temperature
            settings["distill_weight"] = self.distill_weight
        return settings


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


class OversampledFaces(keras.utils.PyDataset):
    """The training split, oversampled and shuffled afresh for each epoch from ``(seed, epoch)``."""

    def __init__(self, split: Split, oversample_to: float, batch_size: int, seed: int, teacher: np.ndarray | None = None):
        """``teacher``: (N, 7) soft labels for the split's faces; the targets are then distillation targets."""
        super().__init__()
        self.images, self.labels, self.teacher = split.images, split.labels, teacher
        self.oversample_to, self.batch_size, self.seed = oversample_to, batch_size, seed
        self.epoch = 0
        self._order: tuple[int, np.ndarray] | None = None
        self.size = len(self._indices())

    def _indices(self) -> np.ndarray:
        if self._order is None or self._order[0] != self.epoch:
            rng = np.random.default_rng([self.seed, self.epoch])
            self._order = (self.epoch, oversampled_indices(self.labels, self.oversample_to, rng))
        return self._order[1]

    def __len__(self) -> int:
        return math.ceil(self.size / self.batch_size)

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        batch = self._indices()[index * self.batch_size : (index + 1) * self.batch_size]
        return as_model_batch(self.images[batch]), _targets(self.labels[batch], self.teacher, batch)


def _targets(labels: np.ndarray, teacher: np.ndarray | None, rows: np.ndarray | slice = slice(None)) -> np.ndarray:
    if teacher is None:
        return keras.utils.to_categorical(labels, len(CLASSES))
    return distillation_targets(labels, teacher[rows])


class _FollowEpoch(keras.callbacks.Callback):
    """Make each epoch's randomness a function of its number alone.

    The dataset learns which epoch starts (fit may start past 0 when BackupAndRestore resumes), and
    every random layer (augmentation, dropout) restarts its seed stream at a point set by the epoch:
    those streams are not part of the backed-up weights, so this is what makes a resumed run
    continue exactly as an uninterrupted one.
    """

    def __init__(self, data: OversampledFaces):
        super().__init__()
        self.data = data

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self.data.epoch = epoch
        for layer in self.model._flatten_layers(include_self=True, recursive=True):
            for generator in getattr(layer, "_seed_generators", ()):
                start = keras.ops.convert_to_numpy(generator.state.value)
                generator.state.assign(np.array([start[0], epoch * 1_000_000], dtype=start.dtype))


class _EpochExtras(keras.callbacks.Callback):
    """Add the 1-based epoch, the learning rate and the epoch's seconds to the logs the next callbacks see."""

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self.started = time.monotonic()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if logs is not None:
            rate = self.model.optimizer.learning_rate
            logs["learning_rate"] = float(keras.ops.convert_to_numpy(rate))
            logs["seconds"] = round(time.monotonic() - self.started, 1)


class _ReportProgress(keras.callbacks.Callback):
    def __init__(self, progress: TrainingProgress, epochs: int, steps: int):
        super().__init__()
        self.progress, self.epochs, self.steps = progress, epochs, steps

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self.progress.epoch_started(epoch + 1, self.epochs, self.steps)

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        self.progress.batch_done(batch + 1, {k: float(v) for k, v in (logs or {}).items()})

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.progress.epoch_done(epoch + 1, {k: float(v) for k, v in (logs or {}).items()})


def train(
    run: TrainingRun,
    dataset: Dataset,
    *,
    progress: TrainingProgress | None = None,
) -> TrainingResult:
    """Train ``run.recipe`` on ``dataset``'s train split, validating on PublicTest (``val``)."""
    train_split = dataset["train"]
    if run.train_limit is not None and run.train_limit < len(train_split):
        rng = np.random.default_rng(run.seed)
        train_split = train_split.subset(np.sort(rng.choice(len(train_split), size=run.train_limit, replace=False)))
    if len(train_split) == 0:
        raise TrainingError(f"{dataset.source}: the train split is empty")
    val_split = dataset["val"] if dataset.has("val") and len(dataset["val"]) else None
    out = run.out
    epochs_done = _prepare_folder(run)

    recipe = run.recipe
    teacher = _teacher_soft_labels(run.teacher, train_split, val_split)
    keras.utils.set_random_seed(run.seed)
    keras.mixed_precision.set_dtype_policy(run.precision)
    data = OversampledFaces(train_split, recipe.oversample_to, recipe.batch_size, run.seed, teacher.get("train"))
    model = recipe.build(run.seed)
    if teacher:
        loss = DistillationLoss(run.distill_temperature, run.distill_weight, recipe.label_smoothing)
        metrics: list = [accuracy_metric()]
    else:
        loss, metrics = recipe.make_loss(), ["accuracy"]
    model.compile(optimizer=recipe.make_optimizer(len(data), run.epochs), loss=loss, metrics=metrics)
    validation = (
        (as_model_batch(val_split.images), _targets(val_split.labels, teacher.get("val")))
        if val_split is not None
        else None
    )
    monitor = "val_accuracy" if validation is not None else "accuracy"
    best_so_far = _best_in_history(out / HISTORY_FILE, monitor) if epochs_done else None
    # Order matters: the extras reach the logger, and the backup is written last, once the epoch's
    # history row and best checkpoint are on disk (a kill in between re-runs that epoch; see _prepare_folder).
    callbacks: list[keras.callbacks.Callback] = [
        _FollowEpoch(data),
        _EpochExtras(),
        keras.callbacks.CSVLogger(str(out / HISTORY_FILE), append=True),
        keras.callbacks.ModelCheckpoint(
            str(out / BEST_FILE), monitor=monitor, mode="max", save_best_only=True, initial_value_threshold=best_so_far
        ),
        keras.callbacks.BackupAndRestore(str(out / BACKUP_FOLDER), save_freq="epoch", delete_checkpoint=False),
    ]
    if progress is not None:
        callbacks.append(_ReportProgress(progress, run.epochs, len(data)))
    model.fit(
        data,
        epochs=run.epochs,
        validation_data=validation,
        class_weight=balanced_class_weights(train_split.labels) if run.class_weights else None,
        callbacks=callbacks,
        verbose=0,
    )
    best_epoch = _best_epoch(out / HISTORY_FILE, monitor)
    keras.mixed_precision.set_dtype_policy("float32")
    return _finish(run, dataset, best_epoch, val_split, train_split)


def _teacher_soft_labels(teacher: Path | None, train_split: Split, val_split: Split | None) -> dict[str, np.ndarray]:
    """The teacher's probabilities for the training (and validation) faces; empty without a teacher."""
    if teacher is None:
        return {}
    try:
        labels = read_soft_labels(teacher)
        soft = {"train": labels.for_split("train", train_split)}
        if val_split is not None:
            soft["val"] = labels.for_split("val", val_split)
    except SoftLabelError as error:
        raise TrainingError(f"teacher {teacher}: {error}") from error
    return soft


def _prepare_folder(run: TrainingRun) -> int:
    """Create or check the run folder; return the epochs already done (0 for a new run)."""
    out = run.out
    settings_path = out / RUN_FILE
    if not run.resume:
        if settings_path.exists():
            raise TrainingError(f"{out} already holds a training run: pass --resume to continue it, or choose another --out")
        out.mkdir(parents=True, exist_ok=True)
        write_atomically(settings_path, json.dumps(run.settings(), indent=2) + "\n")
        return 0
    if not settings_path.exists():
        raise TrainingError(f"{out} holds no training run to resume (no {RUN_FILE})")
    started = json.loads(settings_path.read_text())
    current = run.settings()
    for key in sorted(set(started) | set(current)):
        value = current.get(key)
        if started.get(key) != value:
            raise TrainingError(
                f"{out} holds a run with {key} {started.get(key)!r}, not {value!r}: resume it with the settings it started with"
            )
    epochs_done = _backed_up_epochs(out)
    _truncate_history(out / HISTORY_FILE, epochs_done)
    return epochs_done


def started_settings(out: Path) -> dict[str, Any] | None:
    """The settings a run folder was started with, or None when it holds no run."""
    path = out / RUN_FILE
    return json.loads(path.read_text()) if path.exists() else None


def _backed_up_epochs(out: Path) -> int:
    metadata = out / BACKUP_FOLDER / "training_metadata.json"
    return int(json.loads(metadata.read_text())["epoch"]) if metadata.exists() else 0


def _read_history_rows(path: Path) -> list[dict[str, str]]:
    if not path.exists():
        return []
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def _truncate_history(path: Path, epochs_done: int) -> None:
    """Keep the rows of the epochs the backup holds: an epoch logged just before a kill is run again."""
    rows = _read_history_rows(path)
    if not rows:
        return
    content = io.StringIO()
    writer = csv.DictWriter(content, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(row for row in rows if int(row["epoch"]) < epochs_done)
    write_atomically(path, content.getvalue())


def _best_in_history(path: Path, monitor: str) -> float | None:
    values = [float(row[monitor]) for row in _read_history_rows(path) if row.get(monitor)]
    return max(values) if values else None


def _best_epoch(path: Path, monitor: str) -> int:
    """The 1-based epoch whose weights best.keras holds (the first of equal bests, as ModelCheckpoint keeps)."""
    rows = _read_history_rows(path)
    values = [float(row[monitor]) for row in rows]
    return int(rows[int(np.argmax(values))]["epoch"]) + 1


def _finish(run: TrainingRun, dataset: Dataset, best_epoch: int, val_split: Split | None, train_split: Split) -> TrainingResult:
    """Save the best epoch's weights into a fresh (optimiser-free) calibrated model and write its card."""
    trained = keras.saving.load_model(run.out / BEST_FILE, compile=False)
    model = run.recipe.build(run.seed)
    model.set_weights(trained.get_weights())
    model = run.recipe.for_serving(model)
    calibration: dict[str, Any] = {}
    if val_split is not None:
        calibration = calibration_summary(predict_probabilities(model, val_split.images), val_split.labels)
        model = with_temperature(model, calibration["temperature"])
    model_path = run.out / "model.keras"
    save_served_model(model, model_path)

    metrics = card_metrics(model, dataset)
    write_soft_labels(run.out, model_soft_labels(model, dataset))

    recipe = run.recipe
    card = ModelCard(
        name=recipe.name,
        recipe=recipe.name,
        recipe_description=recipe.description,
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
            "batch_size": recipe.batch_size,
            "class_weights": run.class_weights,
            "oversample_to": recipe.oversample_to,
            "label_smoothing": recipe.label_smoothing,
            "served_flip_averaged": recipe.flip_averaging,
            "precision": run.precision,
            **({"teacher": run.teacher.name, "distill_temperature": run.distill_temperature,
                "distill_weight": run.distill_weight} if run.teacher is not None else {}),
            "hours": round(sum(row["seconds"] for row in read_history(run.out / HISTORY_FILE)) / 3600, 2),
            "machine": machine_description(),
            "backend": keras.backend.backend(),
            "keras_version": keras.__version__,
        },
        metrics=metrics,
        calibration=calibration,
        notes=[SELECTION_NOTE],
        comparisons=run.comparisons,
    )
    write_card(run.out, card, model_path)
    return TrainingResult(model_path=model_path, card=card, epochs_run=run.epochs)


def card_metrics(model: keras.Model, dataset: Dataset) -> dict[str, Any]:
    """Per split: accuracy, F1 (macro, weighted, per class), balanced accuracy as served; for a single
    network, accuracy and macro F1 of one pass and of flip averaging (one of which is what is served)."""
    metrics: dict[str, Any] = {}
    for split_name in ("val", "test"):
        if dataset.has(split_name) and len(dataset[split_name]):
            split = dataset[split_name]
            if is_ensemble(model):  # each member already serves its own test-time choice
                full = compute_metrics(split.labels, predict_probabilities(model, split.images), split_name)
                flip_figures = {}
            else:
                probabilities = flip_choices(model, split.images)
                full = compute_metrics(split.labels, probabilities.served, split_name)
                one_pass = compute_metrics(split.labels, probabilities.one_pass, split_name)
                flipped = compute_metrics(split.labels, probabilities.flip_averaged, split_name)
                flip_figures = {
                    "single_pass_accuracy": one_pass["accuracy"],
                    "single_pass_macro_f1": one_pass["macro_f1"],
                    "flip_tta_accuracy": flipped["accuracy"],
                    "flip_tta_macro_f1": flipped["macro_f1"],
                }
            metrics[split_name] = {
                **{k: full[k] for k in ("n", "accuracy", "macro_f1", "weighted_f1", "balanced_accuracy")},
                "per_class_f1": {name: round(m["f1"], 4) for name, m in full["per_class"].items()},
                **flip_figures,
            }
    return metrics


def machine_description() -> str:
    """The processor and core count training ran on, e.g. 'AMD EPYC 9R14, 2 cores'."""
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return f"{model}, {cores} core{'' if cores == 1 else 's'}"


def read_history(path: Path) -> list[dict[str, float]]:
    """The history rows as numbers, with 1-based epochs."""
    rows = [{k: float(v) for k, v in row.items() if v != ""} for row in _read_history_rows(path)]
    for row in rows:
        row["epoch"] += 1
    return rows
