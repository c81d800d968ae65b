"""Serving speed of an emotion model: faces classified per second, in batches, as the workers call it.

    python bench/classifier.py [--model NAME] [--recipe NAME ...] [--faces N] [--unfolded]

Times EmotionClassifier.predict_faces (the worker's path) on PublicTest faces when the
data is present, random faces otherwise; each model is warmed up first. `--recipe`
also times a recipe's architecture untrained and as served (flip-averaged when the recipe
says so; speed does not depend on the weights), so a recipe can be checked against the
serving budget before it is trained.
`--unfolded` first times the Keras model as saved, before the workers fold its batch
normalisations into the layers before them (fer_model.inference), for comparison.
The last line is the figure for --model, with the backend that served it
(FER_CLASSIFIER_BACKEND=keras or onnx picks one; see workers/serving/classifier.py).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

TARGET_FACES_PER_SECOND = 1000


def load_faces(count: int) -> tuple[np.ndarray, str]:
    from fer_model.data import DataError, load_fer2013

    data = Path(os.environ.get("FER_DATA_DIR", "../shared/data")) / "fer2013"
    try:
        faces = load_fer2013(data)["val"].images
        source = f"PublicTest faces from {data}"
    except (DataError, KeyError, FileNotFoundError):
        faces = np.random.default_rng(0).integers(0, 256, size=(count, 48, 48), dtype=np.uint8)
        source = "random faces (no FER2013 data found)"
    faces = np.resize(faces, (count, 48, 48))
    return faces[..., np.newaxis], source


def faces_per_second(classifier, faces: np.ndarray, repeats: int) -> float:
    classifier.predict_faces(faces[:512])
    best = 0.0
    for _ in range(repeats):
        started = time.perf_counter()
        classifier.predict_faces(faces)
        best = max(best, len(faces) / (time.perf_counter() - started))
    return best


def untrained_model_file(recipe_name: str, folder: Path) -> Path:
    from fer_model.recipes import get_recipe

    path = folder / f"{recipe_name}.keras"
    recipe = get_recipe(recipe_name)
    recipe.for_serving(recipe.build(0)).save(path)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="default", help="model name, run folder or .keras file")
    parser.add_argument("--recipe", action="append", default=[], help="also time this recipe's architecture untrained")
    parser.add_argument("--faces", type=int, default=4096)
    parser.add_argument("--repeats", type=int, default=3, help="timed passes; the best is reported")
    parser.add_argument("--unfolded", action="store_true",
                        help="first time the Keras model as saved, without folding its batch norms, for comparison")
    args = parser.parse_args()

    from workers.serving.classifier import EmotionClassifier, backend_for

    faces, source = load_faces(args.faces)
    print(f"{len(faces)} {source}; {os.cpu_count()} CPU cores; best of {args.repeats} passes")
    with tempfile.TemporaryDirectory() as folder:
        for recipe in args.recipe:
            untrained = EmotionClassifier(str(untrained_model_file(recipe, Path(folder))), backend_for())
            rate = faces_per_second(untrained, faces, args.repeats)
            print(f"recipe {recipe} (untrained architecture): {rate:,.0f} faces/s (backend {untrained.backend})")
    classifier = EmotionClassifier(args.model, backend_for())
    if args.unfolded and classifier.backend == "keras":
        from fer_model.registry import load_model, resolve_model

        served = classifier.model
        classifier.model = load_model(resolve_model(args.model))
        rate = faces_per_second(classifier, faces, args.repeats)
        print(f"model {classifier.identity.name} as saved, batch norms not folded: {rate:,.0f} faces/s")
        classifier.model = served
    rate = faces_per_second(classifier, faces, args.repeats)
    verdict = "meets" if rate >= TARGET_FACES_PER_SECOND else "BELOW"
    print(f"model {classifier.identity.name} ({classifier.identity.version}): {rate:,.0f} faces/s ({verdict} the {TARGET_FACES_PER_SECOND:,}/s target; backend {classifier.backend})")


if __name__ == "__main__":
    main()
