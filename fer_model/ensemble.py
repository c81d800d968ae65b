"""Ensembles: one served model that averages the probabilities of several trained members.

    face -> member A (as served: its flip averaging and temperature) --\
    face -> member B ----------------------------------------------------> Average -> TemperatureScaling
    face -> member C --------------------------------------------------/

The `.keras` file holds every member whole, so it serves like any other model. Members are chosen
by measurement from their soft labels (`fer_model.soft_labels`) without running a network: greedy
forward selection on PublicTest accuracy, the way ensembles are usually pruned.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import keras
import numpy as np

from fer_model.classes import FACE_SIZE

AVERAGE_LAYER = "member_average"


def member_layer_name(name: str) -> str:
    return "member_" + re.sub(r"[^0-9a-zA-Z_]", "_", name)


def build_ensemble(members: dict[str, keras.Model]) -> keras.Model:
    """The mean of the members' served probabilities (uncalibrated as a whole; see `with_temperature`)."""
    if len(members) < 2:
        raise ValueError("an ensemble needs at least two members")
    faces = keras.Input(shape=(FACE_SIZE, FACE_SIZE, 1), name="face")
    outputs = []
    for name, member in members.items():
        wrapped = keras.Model(member.input, member.output, name=member_layer_name(name))
        outputs.append(wrapped(faces))
    averaged = keras.layers.Average(name=AVERAGE_LAYER)(outputs)
    return keras.Model(faces, averaged, name="ensemble")


def is_ensemble(model: keras.Model) -> bool:
    return any(layer.name == AVERAGE_LAYER for layer in model.layers)


@dataclass(frozen=True)
class SelectionStep:
    """One step of forward selection: the member added and the ensemble's accuracy with it."""

    member: str
    members: int
    accuracy: float


def forward_selection(probabilities: dict[str, np.ndarray], labels: np.ndarray) -> list[SelectionStep]:
    """Add, one at a time, the member whose addition gives the most accurate average (ties: the earlier name).

    Returns every step, so the caller sees accuracy against the number of members."""
    remaining = sorted(probabilities)
    chosen: list[str] = []
    total = np.zeros_like(next(iter(probabilities.values())), dtype=np.float64)
    steps = []
    while remaining:
        scores = {name: _accuracy((total + probabilities[name]) / (len(chosen) + 1), labels) for name in remaining}
        best = max(remaining, key=lambda name: (scores[name], -remaining.index(name)))
        chosen.append(best)
        remaining.remove(best)
        total += probabilities[best]
        steps.append(SelectionStep(best, len(chosen), scores[best]))
    return steps


def _accuracy(probabilities: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(probabilities.argmax(axis=1) == labels))

