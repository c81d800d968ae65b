"""Named training recipes: the network, its augmentation and its optimiser, read top to bottom.

Every model takes (N, 48, 48, 1) uint8 faces and returns softmax probabilities over
CLASSES. Preprocessing (resize, per-face scaling) and augmentation are layers inside
the model: augmentation layers only act when training, so the saved model serves
with exactly the preprocessing it was trained with.

A recipe is data: the network is built from its fields by `build_model`, so recipes
that differ in one choice (optimiser, width, input size, augmentation) are one
`dataclasses.replace` apart, and the comparison runs in the model card name them.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import keras

from fer_model.classes import CLASSES, FACE_SIZE
from fer_model.preprocessing import preprocessing_layers
from fer_model.flip_averaging import with_flip_averaging

# (filters, convolutions, dropout) for each block of 3x3 convolutions.
Blocks = tuple[tuple[int, int, float], ...]


@dataclass(frozen=True)
class Augmentation:
    """Random transformations applied while training (each off at 0)."""

    flip: bool = False
    rotation_degrees: float = 0.0
    zoom: float = 0.0
    shift: float = 0.0
    erasing: float = 0.0  # probability of erasing one rectangle of 2-25% of the face

    def layers(self, seed: int) -> list[keras.layers.Layer]:
        layers: list[keras.layers.Layer] = []
        if self.flip:
            layers.append(keras.layers.RandomFlip("horizontal", seed=seed))
        if self.rotation_degrees:
            layers.append(keras.layers.RandomRotation(self.rotation_degrees / 360, fill_mode="nearest", seed=seed))
        if self.zoom:
            layers.append(keras.layers.RandomZoom(self.zoom, fill_mode="nearest", seed=seed))
        if self.shift:
            layers.append(keras.layers.RandomTranslation(self.shift, self.shift, fill_mode="nearest", seed=seed))
        if self.erasing:
            layers.append(
                keras.layers.RandomErasing(factor=self.erasing, scale=(0.02, 0.25), value_range=(0.0, 1.0), seed=seed)
            )
        return layers


@dataclass(frozen=True)
class Recipe:
    name: str
    description: str
    input_size: int
    blocks: Blocks
    # "flatten" keeps every position of the last feature map; "average" pools it (a smaller head).
    pooling: str
    augmentation: Augmentation
    optimizer: str  # "adam" or "sgd" (Nesterov momentum 0.9)
    learning_rate: float
    batch_size: int
    epochs: int
    weight_decay: float = 0.0
    # Oversample each class to at least this fraction of the largest class's count.
    oversample_to: float = 0.0
    label_smoothing: float = 0.0
    warmup_epochs: int = 0
    # Serve the mean of the probabilities for each face and its mirror image (two passes a face).
    flip_averaging: bool = False

    def build(self, seed: int) -> keras.Model:
        return build_model(self, seed)

    def for_serving(self, network: keras.Model) -> keras.Model:
        """The trained network as served: averaged over mirror images when the recipe says so."""
        return with_flip_averaging(network) if self.flip_averaging else network

    def make_loss(self) -> keras.losses.Loss:
        return keras.losses.CategoricalCrossentropy(label_smoothing=self.label_smoothing)

    def make_optimizer(self, steps_per_epoch: int, epochs: int) -> keras.optimizers.Optimizer:
        """The optimiser with its whole learning-rate schedule: optional linear warm-up, then cosine decay
        to 2% of the peak. The rate is a function of the optimiser's step count, so a resumed run
        continues the schedule exactly."""
        warmup_steps = min(self.warmup_epochs, epochs - 1) * steps_per_epoch
        schedule = keras.optimizers.schedules.CosineDecay(
            initial_learning_rate=self.learning_rate / 10 if warmup_steps else self.learning_rate,
            decay_steps=max(epochs * steps_per_epoch - warmup_steps, 1),
            alpha=0.02,
            warmup_target=self.learning_rate if warmup_steps else None,
            warmup_steps=warmup_steps,
        )
        if self.optimizer == "adam":
            if self.weight_decay:
                return keras.optimizers.AdamW(learning_rate=schedule, weight_decay=self.weight_decay)
            return keras.optimizers.Adam(learning_rate=schedule)
        if self.optimizer == "sgd":
            return keras.optimizers.SGD(
                learning_rate=schedule, momentum=0.9, nesterov=True, weight_decay=self.weight_decay or None
            )
        raise ValueError(f"unknown optimizer {self.optimizer!r}")


def build_model(recipe: Recipe, seed: int) -> keras.Model:
    """Input -> preprocessing -> augmentation -> convolution blocks -> pooling -> dense head -> softmax."""
    inputs = keras.Input(shape=(FACE_SIZE, FACE_SIZE, 1), name="face")
    x = inputs
    for layer in preprocessing_layers(recipe.input_size):
        x = layer(x)
    x = keras.Sequential(recipe.augmentation.layers(seed), name="augmentation")(x)

    for block, (filters, convolutions, dropout) in enumerate(recipe.blocks, start=1):
        for conv in range(1, convolutions + 1):
            x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"block{block}_conv{conv}")(x)
            x = keras.layers.BatchNormalization(name=f"block{block}_bn{conv}")(x)
            x = keras.layers.ReLU(name=f"block{block}_relu{conv}")(x)
        # A flattened head needs the last block pooled too; global average pooling does not.
        if recipe.pooling == "flatten" or block < len(recipe.blocks):
            x = keras.layers.MaxPooling2D(2, name=f"block{block}_pool")(x)
        if dropout:
            x = keras.layers.Dropout(dropout, seed=seed, name=f"block{block}_dropout")(x)

    if recipe.pooling == "flatten":
        x = keras.layers.Flatten(name="flatten")(x)
    else:
        x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    x = keras.layers.Dense(256, use_bias=False, name="dense")(x)
    x = keras.layers.BatchNormalization(name="dense_bn")(x)
    x = keras.layers.ReLU(name="dense_relu")(x)
    x = keras.layers.Dropout(0.4, seed=seed, name="dense_dropout")(x)
    # float32 whatever the training precision, so the probabilities and the loss keep full precision.
    outputs = keras.layers.Dense(len(CLASSES), activation="softmax", dtype="float32", name="emotion")(x)
    return keras.Model(inputs, outputs, name=f"fer_{recipe.name.replace('-', '_')}")


SEED = Recipe(
    name="seed",
    description=(
        "A small CNN: 40x40x1 gray input scaled per face to [0,1]; random zoom up to 30%; three blocks of "
        "3x3 convolutions with batch norm and ReLU (1x32, 2x64, 2x128 filters), 2x2 max pooling and dropout "
        "0.1/0.2/0.3; flatten, dense 256 (batch norm, dropout 0.4), softmax over 7 classes; cross-entropy, "
        "Adam 1e-3 with cosine decay, batch 32, 30 epochs; minority classes oversampled to half the largest class."
    ),
    input_size=40,
    blocks=((32, 1, 0.1), (64, 2, 0.2), (128, 2, 0.3)),
    pooling="flatten",
    augmentation=Augmentation(zoom=0.3),
    optimizer="adam",
    learning_rate=1e-3,
    batch_size=32,
    epochs=30,
    oversample_to=0.5,
)

DEFAULT = Recipe(
    name="default",
    description=(
        "A VGG-style net sized for serving on two CPU cores: 40x40x1 gray input scaled per face to [0,1]; "
        "horizontal flip, rotation up to 10 degrees, zoom and shift up to 20%/10%, random erasing; four blocks "
        "of 3x3 convolutions with batch norm (1x32, 2x64, 2x128, 2x256 filters), 2x2 max pooling between blocks, "
        "dropout growing with depth; global average pooling, dense 256 (batch norm, dropout 0.4), softmax over "
        "7 classes; cross-entropy with label smoothing 0.1; SGD with Nesterov momentum 0.9, learning rate 0.02 "
        "with cosine decay, weight decay 5e-4, batch 128, 150 epochs; minority classes oversampled to a third "
        "of the largest class."
    ),
    input_size=40,
    blocks=((32, 1, 0.0), (64, 2, 0.1), (128, 2, 0.2), (256, 2, 0.3)),
    pooling="average",
    augmentation=Augmentation(flip=True, rotation_degrees=10, zoom=0.2, shift=0.1, erasing=0.5),
    optimizer="sgd",
    learning_rate=0.02,
    weight_decay=5e-4,
    batch_size=128,
    epochs=150,
    oversample_to=1 / 3,
    label_smoothing=0.1,
)

# One-choice variants of the default recipe, trained briefly side by side to choose the long run's recipe.
VARIANTS: tuple[Recipe, ...] = (
    replace(
        DEFAULT,
        name="default-adam",
        description="The default recipe with AdamW (learning rate 1e-3, weight decay 1e-4) instead of SGD.",
        optimizer="adam",
        learning_rate=1e-3,
        weight_decay=1e-4,
    ),
    replace(
        DEFAULT,
        name="default-adam-light",
        description="The default recipe with AdamW (learning rate 1e-3, weight decay 1e-4), light augmentation (flip, "
        "rotation 10, zoom 10%, shift 10%; no erasing) and no label smoothing.",
        optimizer="adam",
        learning_rate=1e-3,
        weight_decay=1e-4,
        augmentation=Augmentation(flip=True, rotation_degrees=10, zoom=0.1, shift=0.1),
        label_smoothing=0.0,
    ),
    replace(
        DEFAULT,
        name="default-light",
        description="The default recipe with light augmentation (flip, rotation 10, zoom 10%, shift 10%; no erasing) "
        "and no label smoothing.",
        augmentation=Augmentation(flip=True, rotation_degrees=10, zoom=0.1, shift=0.1),
        label_smoothing=0.0,
    ),
    replace(
        DEFAULT,
        name="default-48",
        description="The default recipe at the faces' native 48x48 input (no resizing).",
        input_size=48,
    ),
    replace(
        DEFAULT,
        name="default-wide",
        description="The default recipe with 1.5x the filters (48, 96, 192, 384).",
        blocks=((48, 1, 0.0), (96, 2, 0.1), (192, 2, 0.2), (384, 2, 0.3)),
    ),
)

# Variants of the seed net (three blocks, flattened head) with the default family's geometric augmentation.
SEED_AUG = replace(
    SEED,
    name="seed-aug",
    description="The seed net with horizontal flip, rotation up to 10 degrees, zoom up to 20% and shift up to 10%; "
    "AdamW (learning rate 1e-3, weight decay 1e-4), batch 64, 80 epochs; served flip-averaged.",
    augmentation=Augmentation(flip=True, rotation_degrees=10, zoom=0.2, shift=0.1),
    weight_decay=1e-4,
    batch_size=64,
    epochs=80,
    flip_averaging=True,
)
SEED_VARIANTS: tuple[Recipe, ...] = (
    SEED_AUG,
    replace(
        SEED_AUG,
        name="seed-aug-erasing",
        description="The seed-aug recipe with random erasing (probability 0.25) and label smoothing 0.1.",
        augmentation=replace(SEED_AUG.augmentation, erasing=0.25),
        label_smoothing=0.1,
    ),
)

# The seed recipe with horizontal flips added to its zoom, and a third more epochs.
SEED_FLIP = replace(
    SEED,
    name="seed-flip",
    description="The seed recipe with random horizontal flips (zoom up to 30% as before), 40 epochs; served "
    "flip-averaged.",
    augmentation=Augmentation(flip=True, zoom=0.3),
    epochs=40,
    flip_averaging=True,
)

# The seed-flip recipe with random shifts, so that the framing of a detector's crop matters less.
SEED_FLIP_SHIFT = replace(
    SEED_FLIP,
    name="seed-flip-shift",
    description="The seed-flip recipe with random shifts up to 10% of the face in each direction.",
    augmentation=replace(SEED_FLIP.augmentation, shift=0.1),
)

# Ensemble members: nets that differ from the seed-flip net in width, input size and optimiser.
SEED_WIDE = replace(
    SEED_FLIP,
    name="seed-wide",
    description="The seed-flip recipe with 1.5x the filters (48, 96, 192) at a 44x44 input; served flip-averaged.",
    input_size=44,
    blocks=((48, 1, 0.1), (96, 2, 0.2), (192, 2, 0.3)),
)
SEED_DEEP = replace(
    SEED_FLIP,
    name="seed-deep",
    description="The seed-flip recipe at the faces' native 48x48 input with a fourth block (2x256 filters, "
    "dropout 0.4) and AdamW (weight decay 1e-4); served flip-averaged.",
    input_size=48,
    blocks=((32, 1, 0.1), (64, 2, 0.2), (128, 2, 0.3), (256, 2, 0.4)),
    weight_decay=1e-4,
)
SEED_DEEP_WIDE = replace(
    SEED_DEEP,
    name="seed-deep-wide",
    description="The seed-deep recipe with 1.5x the filters (48, 96, 192, 384); served flip-averaged.",
    blocks=((48, 1, 0.1), (96, 2, 0.2), (192, 2, 0.3), (384, 2, 0.4)),
)
MEMBERS: tuple[Recipe, ...] = (SEED_WIDE, SEED_DEEP, SEED_DEEP_WIDE)

RECIPES: dict[str, Recipe] = {
    recipe.name: recipe
    for recipe in (SEED, DEFAULT, *VARIANTS, *SEED_VARIANTS, SEED_FLIP, SEED_FLIP_SHIFT, *MEMBERS)
}


def get_recipe(name: str) -> Recipe:
    try:
        return RECIPES[name]
    except KeyError:
        raise KeyError(f"unknown recipe {name!r}; available: {', '.join(sorted(RECIPES))}") from None
