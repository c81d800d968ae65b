"""Training speed of a recipe's network under each speed lever: images per second of `fit`.

Each configuration runs in its own process (the Keras backend and dtype policy are global), on
synthetic 48x48 faces, with the recipe's augmentation and optimiser: one warm-up epoch, then a
timed one.

    python bench/training_speed.py --recipe default
    python bench/training_speed.py --recipe seed-flip --images 4096 --configs tensorflow:float32:64,tensorflow:mixed_bfloat16:64

A configuration is BACKEND:POLICY:BATCH; a backend that is not installed is reported, not timed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIGS = (
    "tensorflow:float32:128",
    "tensorflow:mixed_bfloat16:128",
    "tensorflow:float32:256",
    "tensorflow:mixed_bfloat16:256",
    "jax:float32:128",
    "jax:mixed_bfloat16:128",
    "torch:float32:128",
)


def time_one(recipe_name: str, policy: str, batch_size: int, images: int) -> dict[str, float]:
    import dataclasses

    import keras
    import numpy as np

    from fer_model.classes import CLASSES
    from fer_model.recipes import get_recipe

    keras.mixed_precision.set_dtype_policy(policy)
    recipe = dataclasses.replace(get_recipe(recipe_name), batch_size=batch_size)
    rng = np.random.default_rng(0)
    faces = rng.integers(0, 256, size=(images, 48, 48, 1)).astype("float32")
    labels = keras.utils.to_categorical(rng.integers(0, len(CLASSES), size=images), len(CLASSES))
    model = recipe.build(seed=1)
    steps = images // batch_size
    model.compile(optimizer=recipe.make_optimizer(steps, 2), loss=recipe.make_loss(), metrics=["accuracy"])
    model.fit(faces, labels, batch_size=batch_size, epochs=1, verbose=0)
    started = time.perf_counter()
    model.fit(faces, labels, batch_size=batch_size, epochs=1, verbose=0)
    seconds = time.perf_counter() - started
    return {"images_per_second": images / seconds, "seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", default="default")
    parser.add_argument("--images", type=int, default=4096, help="synthetic faces per epoch")
    parser.add_argument("--configs", default=",".join(DEFAULT_CONFIGS), help="comma-separated BACKEND:POLICY:BATCH")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.one:
        _, policy, batch = args.one.split(":")
        print(json.dumps(time_one(args.recipe, policy, int(batch), args.images)))
        return

    print(f"recipe {args.recipe}, {args.images} synthetic faces per epoch, {os.cpu_count()} cores")
    print(f"{'backend':<11}{'policy':<16}{'batch':>6}{'images/s':>10}")
    for config in args.configs.split(","):
        backend, policy, batch = config.split(":")
        env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(ROOT)}
        done = subprocess.run(
            [sys.executable, __file__, "--recipe", args.recipe, "--images", str(args.images), "--one", config],
            env=env, capture_output=True, text=True,
        )
        if done.returncode != 0:
            reason = (done.stderr.strip().splitlines() or ["failed"])[-1][:60]
            print(f"{backend:<11}{policy:<16}{batch:>6}  not timed: {reason}")
            continue
        result = json.loads(done.stdout.strip().splitlines()[-1])
        print(f"{backend:<11}{policy:<16}{batch:>6}{result['images_per_second']:>10.0f}")


if __name__ == "__main__":
    main()
