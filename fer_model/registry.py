"""Find and load trained models: the committed ones by name, or any `.keras` file or run folder."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fer_model.model_card import CARD_JSON, ModelCard, read_card
from fer_model.served_graph import INT8, int8_path_for

MODELS_DIR = Path(__file__).parent / "models"
MODEL_FILE = "model.keras"
DEFAULT_NAME = "default"
# Names the committed model that `default` stands for: the pipeline's model unless --model says otherwise.
DEFAULT_POINTER = MODELS_DIR / "DEFAULT"
FLOAT32 = "float32"
INT8_SUFFIX = f"-{INT8}"  # "seed-deep-int8": the model seed-deep served by its int8 graph (fer model quantize)


class ModelNotFound(Exception):
    """No model at the given name or path, or a file that is not a loadable model."""


@dataclass(frozen=True)
class ModelRef:
    """Where a model file lives, its card when one sits beside it, and the precision it serves at.

    ``precision`` INT8: the model is served by its int8 graph (``served_graph.int8_path_for``) on ONNX
    Runtime, and named with INT8_SUFFIX, so that its labels are recorded apart from the float model's."""

    path: Path
    card: ModelCard | None
    precision: str = FLOAT32

    @property
    def name(self) -> str:
        base = self.card.name if self.card else self.path.stem
        return base + INT8_SUFFIX if self.precision == INT8 else base

    @property
    def int8_graph(self) -> Path:
        return int8_path_for(self.path)

    @property
    def committed(self) -> bool:
        """Committed with the package (under fer_model/models/), which every run uses."""
        return MODELS_DIR.resolve() in self.path.resolve().parents

    @property
    def folder(self) -> Path:
        return self.path.parent


def available_models() -> list[ModelRef]:
    """The models committed with the package, in name order, each followed by its int8 variant when it has one."""
    if not MODELS_DIR.is_dir():
        return []
    refs = []
    for folder in sorted(MODELS_DIR.iterdir()):
        if (folder / MODEL_FILE).is_file():
            ref = resolve_model(folder.name)
            refs.append(ref)
            if ref.int8_graph.is_file():
                refs.append(ModelRef(path=ref.path, card=ref.card, precision=INT8))
    return refs


def default_model_name() -> str:
    """The committed model that `default` resolves to."""
    return DEFAULT_POINTER.read_text().strip() if DEFAULT_POINTER.is_file() else DEFAULT_NAME


def resolve_model(name_or_path: str | Path) -> ModelRef:
    """A committed model's name (`seed`, or `default`), a run folder holding model.keras, or a `.keras` file;
    any of these followed by INT8_SUFFIX for its int8 graph (``seed-deep-int8``)."""
    if str(name_or_path) == DEFAULT_NAME and not (MODELS_DIR / DEFAULT_NAME / MODEL_FILE).is_file():
        name_or_path = default_model_name()
    text = str(name_or_path)
    if text.endswith(INT8_SUFFIX) and not Path(text).expanduser().exists() and not (MODELS_DIR / text).is_dir():
        base = text[: -len(INT8_SUFFIX)]
        ref = resolve_model(base)
        if ref.precision == INT8:
            raise ModelNotFound(f"no model at {text}: {base} is already an int8 model")
        if not ref.int8_graph.is_file():
            committed = " --overwrite-committed" if ref.committed else ""
            raise ModelNotFound(f"{base} has no int8 graph ({ref.int8_graph} is missing): make one with "
                                f"fer model quantize --model {base} --data FER2013_DIR{committed}")
        return ModelRef(path=ref.path, card=ref.card, precision=INT8)
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
