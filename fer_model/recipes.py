"""Named training recipes: the model, its augmentation and its optimiser, read top to bottom.

Every model takes (N, 48, 48, 1) uint8 faces and returns softmax probabilities over
CLASSES. Preprocessing (resize, per-face scaling) and augmentation are layers inside
the model: augmentation layers only act when training, so the saved model serves
with exactly the preprocessing it was trained with.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import keras

from fer_model.classes import CLASSES
from fer_model.preprocessing import FACE_SIZE, preprocessing_layers


@dataclass(frozen=True)
class Recipe:
    name: str
    description: str
    input_size: int
    build: Callable[[int], keras.Model]
    make_optimizer: Callable[[], keras.optimizers.Optimizer]
    batch_size: int
    epochs: int
    # Oversample each class to at least this fraction of the largest class's count.
    oversample_to: float = 0.0
    class_weights: bool = False
    label_smoothing: float = 0.0
    notes: list[str] = field(default_factory=list)

    def make_loss(self) -> keras.losses.Loss:
        return keras.losses.CategoricalCrossentropy(label_smoothing=self.label_smoothing)


def conv_blocks(x, blocks: tuple[tuple[int, int, float], ...], seed: int, *, pool_last: bool):
    """(filters, convolutions, dropout) per block: 3x3 conv + batch norm + ReLU, then 2x2 max pooling
    (not after the last block unless ``pool_last``) and dropout (none when 0)."""
    for block, (filters, convs, dropout) in enumerate(blocks, start=1):
        for conv in range(1, convs + 1):
            x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"block{block}_conv{conv}")(x)
            x = keras.layers.BatchNormalization(name=f"block{block}_bn{conv}")(x)
            x = keras.layers.ReLU(name=f"block{block}_relu{conv}")(x)
        if pool_last or block < len(blocks):
            x = keras.layers.MaxPooling2D(2, name=f"block{block}_pool")(x)
        if dropout:
            x = keras.layers.Dropout(dropout, seed=seed, name=f"block{block}_dropout")(x)
    return x


def classifier_head(x, seed: int):
    """Dense 256 (batch norm, ReLU, dropout 0.4), then softmax over the classes."""
    x = keras.layers.Dense(256, use_bias=False, name="dense")(x)
    x = keras.layers.BatchNormalization(name="dense_bn")(x)
    x = keras.layers.ReLU(name="dense_relu")(x)
    x = keras.layers.Dropout(0.4, seed=seed, name="dense_dropout")(x)
    return keras.layers.Dense(len(CLASSES), activation="softmax", name="emotion")(x)


def _preprocessed_and_augmented(size: int, augmentations: list) -> tuple:
    """The face input, the shared preprocessing layers, then the recipe's augmentation (active in training only)."""
    inputs = keras.Input(shape=(FACE_SIZE, FACE_SIZE, 1), name="face")
    x = inputs
    for layer in preprocessing_layers(size):
        x = layer(x)
    return inputs, keras.Sequential(augmentations, name="augmentation")(x)


def build_seed_model(seed: int) -> keras.Model:
    """The brief's CNN: 3x3 ReLU convolutions, 2x2 max pooling, dropout, dense layers, softmax."""
    inputs, x = _preprocessed_and_augmented(
        RECIPES["seed"].input_size, [keras.layers.RandomZoom(0.3, fill_mode="nearest", seed=seed)]
    )
    # One convolution at full resolution keeps an epoch affordable on two CPU cores;
    # the deeper, cheaper 20x20 and 10x10 blocks get two.
    # Dropout grows with depth: uniform 0.25 everywhere left the net stuck near chance for epochs.
    x = conv_blocks(x, ((32, 1, 0.1), (64, 2, 0.2), (128, 2, 0.3)), seed, pool_last=True)
    x = keras.layers.Flatten(name="flatten")(x)
    return keras.Model(inputs, classifier_head(x, seed), name="fer_seed")


def build_default_model(seed: int) -> keras.Model:
    """A VGG-style net sized for serving on two CPU cores (about 1.5x the seed's cost per face).

    Geometric augmentation and random erasing run inside the model while training;
    global average pooling instead of a wide flatten keeps the head small.
    """
    inputs, x = _preprocessed_and_augmented(
        RECIPES["default"].input_size,
        [
            keras.layers.RandomFlip("horizontal", seed=seed),
            keras.layers.RandomRotation(10 / 360, fill_mode="nearest", seed=seed),
            keras.layers.RandomZoom((-0.2, 0.2), fill_mode="nearest", seed=seed),
            keras.layers.RandomTranslation(0.1, 0.1, fill_mode="nearest", seed=seed),
            keras.layers.RandomErasing(factor=0.5, scale=(0.02, 0.25), value_range=(0.0, 1.0), seed=seed),
        ],
    )
    x = conv_blocks(x, ((32, 1, 0.0), (64, 2, 0.1), (128, 2, 0.2), (256, 2, 0.3)), seed, pool_last=False)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    return keras.Model(inputs, classifier_head(x, seed), name="fer_default")


RECIPES: dict[str, Recipe] = {
    "seed": Recipe(
        name="seed",
        description=(
            "The original brief: 40x40x1 gray input scaled to [0,1]; random zoom up to 30% "
            "with nearest fill; three blocks of 3x3 ReLU convolutions (1x32, 2x64, 2x128 filters, "
            "batch norm), 2x2 max pooling and dropout 0.1/0.2/0.3; flatten, dense 256 (batch norm, dropout 0.4), softmax over 7 "
            "classes; categorical cross-entropy, Adam, batch 32, 30 epochs; minority classes "
            "oversampled (with augmentation) to half the largest class."
        ),
        input_size=40,
        build=build_seed_model,
        make_optimizer=lambda: keras.optimizers.Adam(learning_rate=1e-3),
        batch_size=32,
        epochs=30,
        oversample_to=0.5,
    ),
    "default": Recipe(
        name="default",
        description=(
            "40x40x1 gray input scaled per face to [0,1]; horizontal flip, rotation up to 10 degrees, "
            "zoom and shift up to 20%/10%, random erasing; four blocks of 3x3 convolutions with batch norm "
            "(1x32, 2x64, 2x128, 2x256 filters), 2x2 max pooling between blocks, dropout growing with depth; "
            "global average pooling, dense 256 (batch norm, dropout 0.4), softmax over 7 classes; "
            "cross-entropy with label smoothing 0.1; SGD with Nesterov momentum 0.9, learning rate 0.01 "
            "with cosine decay, weight decay 5e-4, batch 64, 150 epochs; minority classes oversampled "
            "to a third of the largest class."
        ),
        input_size=40,
        build=build_default_model,
        make_optimizer=lambda: keras.optimizers.SGD(learning_rate=0.01, momentum=0.9, nesterov=True, weight_decay=5e-4),
        batch_size=64,
        epochs=150,
        oversample_to=1 / 3,
        label_smoothing=0.1,
    ),
}


def get_recipe(name: str) -> Recipe:
    try:
        return RECIPES[name]
    except KeyError:
        raise KeyError(f"unknown recipe {name!r}; available: {', '.join(sorted(RECIPES))}") from None
