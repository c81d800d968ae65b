"""Fit a temperature for an already saved model and write it into the model file and its card."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import keras

from fer_model.calibration import TemperatureScaling, calibration_summary, with_temperature
from fer_model.data import Split
from fer_model.evaluation import predict_probabilities
from fer_model.model_card import CARD_JSON, read_card, write_card
from fer_model.registry import ModelRef, load_model


class CalibrationError(Exception):
    """The model cannot be calibrated in place (no card beside it, or nothing to fit on)."""


def calibrate_saved_model(ref: ModelRef, validation: Split) -> dict[str, Any]:
    """Refit the temperature on ``validation`` (replacing any earlier one); returns the card's calibration entry."""
    if not (ref.folder / CARD_JSON).is_file():
        raise CalibrationError(f"{ref.path}: no {CARD_JSON} beside the model; calibrate a run folder or a committed model")
    if len(validation) == 0:
        raise CalibrationError("the validation split is empty")
    model = load_model(ref)
    network = (
        keras.Model(model.input, model.layers[-2].output) if isinstance(model.layers[-1], TemperatureScaling) else model
    )
    summary = calibration_summary(predict_probabilities(network, validation.images), validation.labels)
    calibrated = with_temperature(network, summary["temperature"])
    partial = ref.path.with_name(ref.path.stem + ".partial.keras")
    calibrated.save(partial)
    os.replace(partial, ref.path)
    card = read_card(ref.folder)
    card.calibration = summary
    write_card(ref.folder, card, Path(ref.path))
    return summary
