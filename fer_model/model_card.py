"""Model cards: what a trained model is, how it was made, and how well it does.

A card is ``card.json`` (read by code: `fer model list`, tests) plus ``card.md``
(read by people), written beside the model file.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from fer_model.files import file_sha256, write_atomically

CARD_JSON = "card.json"
CARD_MARKDOWN = "card.md"


@dataclass
class ModelCard:
    name: str
    recipe: str
    recipe_description: str
    command: str
    data: dict[str, Any]
    training: dict[str, Any]
    metrics: dict[str, dict[str, float]]
    date: str = field(default_factory=lambda: dt.date.today().isoformat())
    model_file: str = "model.keras"
    model_sha256: str = ""
    calibration: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    # Short runs of candidate recipes that chose this one: recipe, epochs, PublicTest accuracy and macro F1, hours.
    comparisons: list[dict[str, Any]] = field(default_factory=list)
    # An ensemble's members: name, recipe, epochs, hours, PublicTest accuracy alone, and the ensemble's
    # accuracy with the members up to this one in forward-selection order.
    members: list[dict[str, Any]] = field(default_factory=list)
    # The int8 graph (`fer model quantize`): its file and sha256, calibration, command, date and PublicTest figures.
    int8: dict[str, Any] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        if self.members:
            return "ensemble"
        return "student" if self.training.get("teacher") else "network"


def write_card(folder: Path, card: ModelCard, model_path: Path) -> None:
    card.model_file = model_path.name
    card.model_sha256 = file_sha256(model_path)
    write_atomically(folder / CARD_JSON, json.dumps(asdict(card), indent=2) + "\n")
    write_atomically(folder / CARD_MARKDOWN, card_markdown(card))


def comparison_row(folder: Path) -> dict[str, Any]:
    """One row of a recipe comparison table, from a finished run's card."""
    card = read_card(folder)
    val = card.metrics.get("val", {})
    return {
        "recipe": card.recipe,
        "epochs": card.training.get("epochs"),
        "accuracy": val.get("accuracy", float("nan")),
        "macro_f1": val.get("macro_f1", float("nan")),
        "hours": card.training.get("hours", float("nan")),
        "description": card.recipe_description,
    }


def _hours(hours: Any) -> str:
    """Hours as the table shows them: '-' where the compared run's card did not record them."""
    return "-" if hours is None or hours != hours else f"{hours:.2f}"


def read_card(folder: Path) -> ModelCard:
    return ModelCard(**json.loads((folder / CARD_JSON).read_text()))


def card_markdown(card: ModelCard) -> str:
    lines = [
        f"# Model card: {card.name}",
        "",
        f"- Date: {card.date}",
        f"- Recipe: `{card.recipe}`: {card.recipe_description}",
        f"- Model file: `{card.model_file}` (sha256 `{card.model_sha256}`)",
        "",
        "## Data",
        "",
        *[f"- {key}: {value}" for key, value in card.data.items()],
        "",
        "## Training",
        "",
        "Reproduce with:",
        "",
        "```",
        card.command,
        "```",
        "",
        *[f"- {key}: {value}" for key, value in card.training.items()],
        "",
        "## Metrics",
        "",
        "| split | n | accuracy | macro F1 | weighted F1 | balanced accuracy |",
        "|---|---|---|---|---|---|",
        *[
            f"| {split} ({_split_title(split)}) | {m['n']} | {m['accuracy']:.4f} | {m['macro_f1']:.4f} | "
            f"{m['weighted_f1']:.4f} | {m['balanced_accuracy']:.4f} |"
            for split, m in card.metrics.items()
        ],
        "",
    ]
    per_class = {split: m["per_class_f1"] for split, m in card.metrics.items() if "per_class_f1" in m}
    if per_class and not all("flip_tta_accuracy" in card.metrics[split] for split in per_class):
        classes = list(next(iter(per_class.values())))
        lines += [
            "| split | " + " | ".join(f"F1 {c}" for c in classes) + " |",
            "|---|" + "---|" * len(classes),
            *[f"| {_split_title(split)} | " + " | ".join(f"{f1s[c]:.3f}" for c in classes) + " |"
              for split, f1s in per_class.items()],
            "",
        ]
    elif per_class:
        classes = list(next(iter(per_class.values())))
        # A card without one-pass figures is for a model that serves one pass: its accuracy is that figure.
        one_pass = {
            split: (card.metrics[split].get("single_pass_accuracy", card.metrics[split]["accuracy"]),
                    card.metrics[split].get("single_pass_macro_f1", card.metrics[split]["macro_f1"]))
            for split in per_class
        }
        if card.training.get("served_flip_averaged"):
            lines += ["The model serves the mean of each face's and its mirror image's probabilities "
                      "(flip averaging, two passes of the network a face); the figures above are for that.", ""]
        lines += [
            "| split | one-pass accuracy | one-pass macro F1 | flip-averaged accuracy | flip-averaged macro F1 | "
            + " | ".join(f"F1 {c}" for c in classes) + " |",
            "|---|---|---|---|---|" + "---|" * len(classes),
            *[
                f"| {_split_title(split)} | {one_pass[split][0]:.4f} | {one_pass[split][1]:.4f} | "
                f"{card.metrics[split]['flip_tta_accuracy']:.4f} | "
                f"{card.metrics[split]['flip_tta_macro_f1']:.4f} | " + " | ".join(f"{f1s[c]:.3f}" for c in classes) + " |"
                for split, f1s in per_class.items()
            ],
            "",
        ]
    if card.members:
        lines += [
            "## Members",
            "",
            "Each member alone as served, and the ensemble's PublicTest accuracy with the members up to that row "
            "(added in forward-selection order: each row adds the member that helps most).",
            "",
            "| member | recipe | epochs | hours | PublicTest accuracy alone | macro F1 alone | ensemble accuracy with k members |",
            "|---|---|---|---|---|---|---|",
            *[
                f"| `{row['name']}` | `{row['recipe']}` | {row.get('epochs', '-')} | {_hours(row.get('hours'))} | "
                f"{row['accuracy']:.4f} | {row['macro_f1']:.4f} | {row['ensemble_accuracy']:.4f} (k={row['k']}) |"
                for row in card.members
            ],
            "",
        ]
    if card.comparisons:
        lines += [
            "## Recipe comparison",
            "",
            "Runs of one-choice variants that this recipe was chosen against, each scored on PublicTest.",
            "",
            "| recipe | epochs | PublicTest accuracy | macro F1 | hours | what differs |",
            "|---|---|---|---|---|---|",
            *[
                f"| `{row['recipe']}` | {row['epochs']} | {row['accuracy']:.4f} | {row['macro_f1']:.4f} | "
                f"{_hours(row['hours'])} | {row['description']} |"
                for row in card.comparisons
            ],
            "",
        ]
    if card.calibration:
        c = card.calibration
        lines += [
            "## Calibration",
            "",
            f"Temperature {c['temperature']:.3f} fitted on {c['n']} PublicTest faces (negative log-likelihood) and "
            "built into the model file. Expected calibration error (15 bins): "
            f"{c['ece_before']:.4f} before, {c['ece_after']:.4f} after; {c['ece_after_cross_fitted']:.4f} after "
            "when each half of PublicTest is rescaled with the temperature fitted on the other half.",
            "",
        ]
    if card.int8:
        q = card.int8
        m = q["metrics"]
        lines += [
            "## Int8 graph",
            "",
            f"`{q['graph_file']}` (sha256 `{q['graph_sha256']}`), served as `{card.name}-int8`: the ONNX graph with its "
            f"convolution and dense weights in int8 (per channel) and the activations inside the network in int8, "
            f"scaled on {q['calibration_faces']} FER2013 Training faces ({q['calibration_method']}); preprocessing, "
            f"softmax, averaging and temperature stay in float. Made {q['date']} with:",
            "",
            "```",
            q["command"],
            "```",
            "",
            "| split | n | accuracy | macro F1 | weighted F1 | ECE | same label as the float model |",
            "|---|---|---|---|---|---|---|",
            f"| val ({_split_title('val')}) | {m['n']} | {m['accuracy']:.4f} | {m['macro_f1']:.4f} | "
            f"{m['weighted_f1']:.4f} | {m['ece']:.4f} | {m['agreement']:.4f} |",
            "",
        ]
    if card.notes:
        lines += ["## Notes", "", *[f"- {note}" for note in card.notes], ""]
    return "\n".join(lines)


def _split_title(split: str) -> str:
    from fer_model.data import SPLIT_TITLES  # NumPy and OpenCV load only here: the registry reads cards without them

    return SPLIT_TITLES.get(split, split)
