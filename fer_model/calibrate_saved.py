"""Fit a temperature for an already saved model and write it into the model file and its card."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fer_model.calibration import calibration_summary, with_temperature, without_temperature
from fer_model.data import Split
from fer_model.evaluation import predict_probabilities
from fer_model.model_card import CARD_JSON, read_card, write_card
from fer_model.registry import ModelRef, load_model
from fer_model.onnx_export import save_served_model


class CalibrationError(Exception):
    """The model cannot be calibrated in place (no card beside it, or nothing to fit on)."""


def calibrate_saved_model(ref: ModelRef, validation: Split) -> dict[str, Any]:
    """Refit the temperature on ``validation`` (replacing any earlier one); returns the card's calibration entry."""
    if not (ref.folder / CARD_JSON).is_file():
        raise CalibrationError(f"{ref.path}: no {CARD_JSON} beside the model; calibrate a run folder or a committed model")
    if len(validation) == 0:
        raise CalibrationError("the validation split is empty")
    network = without_temperature(load_model(ref))
    summary = calibration_summary(predict_probabilities(network, validation.images), validation.labels)
    save_served_model(with_temperature(network, summary["temperature"]), ref.path)
    card = read_card(ref.folder)
    card.calibration = summary
    card.int8 = {}  # the file changes, and its int8 graph with it (removed on saving)
    write_card(ref.folder, card, Path(ref.path))
    return summary
