"""A model's probabilities for every face of the Training and PublicTest splits, kept beside the model.

They are what an ensemble averages and what a student learns from (knowledge distillation), so a
member trained once never has to run again for either. Stored as float16 in ``soft_labels.npz``,
keyed by each face's file name (or CSV line), so they line up with any later read of the same data.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fer_model.data import Dataset, Split
from fer_model.files import atomic_path

SOFT_LABELS_FILE = "soft_labels.npz"
SOFT_LABEL_SPLITS = ("train", "val")


class SoftLabelError(Exception):
    """Soft labels that are missing or do not cover the faces asked for; the message says which."""


def face_keys(split: Split) -> np.ndarray:
    """A key per face that does not depend on where the data folder lives: its file name (or CSV line)."""
    return np.array([os.path.basename(str(source)) for source in split.sources])


@dataclass(frozen=True)
class SoftLabels:
    """Per split: the faces' keys and their (N, 7) probabilities."""

    keys: dict[str, np.ndarray]
    probabilities: dict[str, np.ndarray]

    def for_split(self, name: str, split: Split) -> np.ndarray:
        """(N, 7) float32 probabilities in ``split``'s order; every face must be covered."""
        if name not in self.keys:
            raise SoftLabelError(f"no soft labels for split {name!r}")
        index = {key: i for i, key in enumerate(self.keys[name])}
        wanted = face_keys(split)
        missing = [key for key in wanted if key not in index]
        if missing:
            raise SoftLabelError(
                f"soft labels cover {len(wanted) - len(missing)} of the {len(wanted)} {name} faces "
                f"(missing, for example, {missing[0]}): they were made from other data"
            )
        return self.probabilities[name][[index[key] for key in wanted]].astype(np.float32)


def model_soft_labels(model, dataset: Dataset) -> dict[str, tuple[Split, np.ndarray]]:
    """The model's served probabilities for every face of the Training and PublicTest splits it has."""
    # Keras loads only where probabilities are computed: reading soft labels needs NumPy alone.
    from fer_model.evaluation import predict_probabilities

    return {
        name: (dataset[name], predict_probabilities(model, dataset[name].images))
        for name in SOFT_LABEL_SPLITS
        if dataset.has(name)
    }


def write_soft_labels(folder: Path, splits: dict[str, tuple[Split, np.ndarray]]) -> Path:
    """Save each split's probabilities (float16) with its faces' keys; returns the file."""
    arrays: dict[str, np.ndarray] = {}
    for name, (split, probabilities) in splits.items():
        arrays[f"{name}_keys"] = face_keys(split)
        arrays[f"{name}_probabilities"] = probabilities.astype(np.float16)
    path = folder / SOFT_LABELS_FILE
    with atomic_path(path) as temporary:
        np.savez_compressed(temporary, **arrays)
    return path


def read_soft_labels(folder: Path) -> SoftLabels:
    path = folder / SOFT_LABELS_FILE
    if not path.is_file():
        raise SoftLabelError(f"{folder} has no {SOFT_LABELS_FILE}: run `fer model soft-labels` for it first")
    try:
        with np.load(path, allow_pickle=False) as arrays:
            names = sorted({key.rsplit("_", 1)[0] for key in arrays.files})
            return SoftLabels(
                keys={name: arrays[f"{name}_keys"] for name in names},
                probabilities={name: arrays[f"{name}_probabilities"] for name in names},
            )
    except (OSError, ValueError, KeyError) as error:
        raise SoftLabelError(f"{path}: not a soft-labels file ({error})") from error
