"""Make an ensemble's folder from trained members: the served model, its ONNX graph, card and soft labels."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np

from fer_model.calibration import calibration_summary, rescale, with_temperature
from fer_model.data import Dataset
from fer_model.ensemble import SelectionStep, build_ensemble, forward_selection
from fer_model.evaluation import predict_probabilities
from fer_model.metrics import compute_metrics
from fer_model.model_card import ModelCard, write_card
from fer_model.onnx_export import save_served_model
from fer_model.registry import ModelRef, load_model
from fer_model.soft_labels import SOFT_LABEL_SPLITS, SoftLabelError, read_soft_labels, write_soft_labels
from fer_model.training import card_metrics


class EnsembleError(Exception):
    """The ensemble cannot be made from these members or this data; the message says why."""


@dataclass
class EnsembleResult:
    model_path: Path
    card: ModelCard
    selection: list[SelectionStep]


def make_ensemble(members: list[ModelRef], dataset: Dataset, out: Path, name: str, command: str) -> EnsembleResult:
    """Average ``members`` into one served model in ``out``: model.keras, model.onnx, card and soft labels.

    The temperature is fitted on PublicTest; the ensemble's Training soft labels are its members'
    averaged and rescaled (exactly what the ensemble computes), so no network runs over Training."""
    if len(members) < 2:
        raise EnsembleError("an ensemble needs at least two members")
    names = [ref.folder.name if ref.path.name == "model.keras" else ref.name for ref in members]
    if len(set(names)) < len(names):
        raise EnsembleError(f"members named twice: {', '.join(sorted(n for n in names if names.count(n) > 1))}")
    if not dataset.has("val"):
        raise EnsembleError(f"{dataset.source}: no PublicTest (val) split to fit the temperature on")
    val = dataset["val"]
    soft = {}
    for member_name, ref in zip(names, members):
        try:
            labels = read_soft_labels(ref.folder)
            soft[member_name] = {split: labels.for_split(split, dataset[split]) for split in SOFT_LABEL_SPLITS}
        except SoftLabelError as error:
            raise EnsembleError(f"member {member_name}: {error}") from error
    selection = forward_selection({n: soft[n]["val"] for n in names}, val.labels)

    network = build_ensemble({member_name: load_model(ref) for member_name, ref in zip(names, members)})
    network = keras.Model(network.input, network.output, name=re.sub(r"[^0-9a-zA-Z_]", "_", name))
    raw_val = predict_probabilities(network, val.images)
    calibration = calibration_summary(raw_val, val.labels)
    model = with_temperature(network, calibration["temperature"])
    out.mkdir(parents=True, exist_ok=True)
    model_path = out / "model.keras"
    save_served_model(model, model_path)
    metrics = card_metrics(model, dataset)
    train_average = np.mean([soft[n]["train"] for n in names], axis=0)
    write_soft_labels(out, {
        "train": (dataset["train"], rescale(train_average, calibration["temperature"])),
        "val": (val, rescale(raw_val, calibration["temperature"])),
    })

    member_rows = []
    for step in selection:
        card = members[names.index(step.member)].card
        # The member's card holds its exact figures; soft labels (float16) can differ on a tie.
        alone = (card.metrics.get("val") if card else None) or compute_metrics(val.labels, soft[step.member]["val"], "val")
        member_rows.append({
            "name": step.member,
            "recipe": card.recipe if card else "",
            "epochs": card.training.get("epochs") if card else None,
            "hours": card.training.get("hours") if card else None,
            "accuracy": alone["accuracy"],
            "macro_f1": alone["macro_f1"],
            "k": step.members,
            "ensemble_accuracy": step.accuracy,
        })
    hours = [row["hours"] for row in member_rows if isinstance(row["hours"], (int, float))]
    card = ModelCard(
        name=name,
        recipe="ensemble",
        recipe_description=(
            f"The mean of the served probabilities of {len(members)} members ({', '.join(names)}), each with its own "
            "preprocessing, flip averaging and temperature, then one temperature fitted on PublicTest."
        ),
        command=command,
        data={
            "source": str(dataset.source),
            "train_images": len(dataset["train"]),
            "val_images": len(val),
            "test_images": len(dataset["test"]),
        },
        training={"members": len(members), "hours": round(sum(hours), 2), "machine": "see the members' cards"},
        metrics=metrics,
        calibration=calibration,
        notes=["PublicTest chose the members' best epochs and this ensemble's temperature, so its PublicTest figures "
               "are slightly optimistic; the withheld PrivateTest split is the unbiased check."],
        members=member_rows,
    )
    write_card(out, card, model_path)
    return EnsembleResult(model_path=model_path, card=card, selection=selection)
