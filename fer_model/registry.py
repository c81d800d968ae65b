"""Find and load trained models: the committed ones by name, or any `.keras` file or run folder."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fer_model.model_card import CARD_JSON, ModelCard, read_card

MODELS_DIR = Path(__file__).parent / "models"
MODEL_FILE = "model.keras"
DEFAULT_NAME = "default"
# Names the committed model that `default` stands for: the pipeline's model unless --model says otherwise.
DEFAULT_POINTER = MODELS_DIR / "DEFAULT"


class ModelNotFound(Exception):
    """No model at the given name or path, or a file that is not a loadable model."""


@dataclass(frozen=True)
class ModelRef:
    """Where a model file lives, and its card when one sits beside it."""

    path: Path
    card: ModelCard | None

    @property
    def name(self) -> str:
        return self.card.name if self.card else self.path.stem

    @property
    def folder(self) -> Path:
        return self.path.parent


def available_models() -> list[ModelRef]:
    """The models committed with the package, in name order."""
    if not MODELS_DIR.is_dir():
        return []
    return [resolve_model(folder.name) for folder in sorted(MODELS_DIR.iterdir()) if (folder / MODEL_FILE).is_file()]


def default_model_name() -> str:
    """The committed model that `default` resolves to."""
    return DEFAULT_POINTER.read_text().strip() if DEFAULT_POINTER.is_file() else DEFAULT_NAME


def resolve_model(name_or_path: str | Path) -> ModelRef:
    """A committed model's name (`seed`, or `default`), a run folder holding model.keras, or a `.keras` file."""
    if str(name_or_path) == DEFAULT_NAME and not (MODELS_DIR / DEFAULT_NAME / MODEL_FILE).is_file():
        name_or_path = default_model_name()
    candidate = Path(name_or_path).expanduser()
    if candidate.is_dir():
        candidate = candidate / MODEL_FILE
    elif not candidate.exists() and (MODELS_DIR / str(name_or_path) / MODEL_FILE).is_file():
        candidate = MODELS_DIR / str(name_or_path) / MODEL_FILE
    if not candidate.is_file():
        names = ", ".join(ref.name for ref in available_models()) or "none"
        raise ModelNotFound(f"no model at {name_or_path!s}: give a .keras file, a run folder, or a model name ({names})")
    card = read_card(candidate.parent) if (candidate.parent / CARD_JSON).is_file() else None
    return ModelRef(path=candidate.resolve(), card=card)


def load_model(ref: ModelRef):
    """Load the Keras model (importing the custom layers it needs)."""
    import keras

    import fer_model.calibration  # noqa: F401  registers TemperatureScaling for deserialisation
    import fer_model.preprocessing  # noqa: F401  registers FaceMinMaxScaling for deserialisation
    import fer_model.flip_averaging  # noqa: F401  registers MirrorFaces for deserialisation

    try:
        return keras.saving.load_model(ref.path, compile=False)
    except Exception as error:  # Keras raises many types for damaged or foreign files
        raise ModelNotFound(f"{ref.path}: not a loadable Keras model ({type(error).__name__}: {error})") from error
