"""Keras layer classes by what they do at inference, named as `.keras` files name them.

A plain module (no Keras import), so the ONNX translation in the workers can read it
without TensorFlow.
"""

from __future__ import annotations

# Layers that pass faces through unchanged at inference: random augmentation and noise, dropout.
IDENTITY_AT_INFERENCE = frozenset({
    "Dropout", "GaussianNoise", "RandomBrightness", "RandomContrast", "RandomErasing", "RandomFlip",
    "RandomRotation", "RandomTranslation", "RandomZoom",
})
