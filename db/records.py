"""What the workers hand to the database: a model's identity and each image's result with its faces."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from fer_model.classes import CLASSES


@dataclass(frozen=True)
class ModelIdentity:
    """What the database records about the model that labelled a face."""

    name: str
    version: str
    file_sha256: str
    metrics: dict


@dataclass
class FaceResult:
    """One face: its box, the detector's score, the model's probabilities (in CLASSES order) and their label
    and confidence (the likeliest class and its probability)."""

    index: int
    x: int
    y: int
    w: int
    h: int
    score: float
    probabilities: list[float] = field(default_factory=list)
    label: str = ""
    confidence: float = 0.0

    def classify(self, probabilities: list[float]) -> None:
        self.probabilities = probabilities
        best = max(range(len(CLASSES)), key=probabilities.__getitem__)
        self.label, self.confidence = CLASSES[best], probabilities[best]


@dataclass
class ImageResult:
    image_id: int
    status: str
    error: str | None = None
    width: int | None = None
    height: int | None = None
    size: int | None = None
    mtime: float | None = None
    sha256: str | None = None
    taken_at: dt.datetime | None = None  # the photo's EXIF capture date
    duration_ms: float = 0.0
    faces: list[FaceResult] = field(default_factory=list)
    linked_from: int | None = None  # the image whose results were copied (same content seen before)
