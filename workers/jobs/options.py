"""A job's options: what a run asks for, carried in its task messages and stored with its job.

Kept free of heavy imports: the CLI reads the defaults at start-up.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from workers.jobs.discovery import DEFAULT_EXTENSIONS
from workers.vision.detector_names import DEFAULT_DETECTOR
from workers.vision.min_face import MIN_FACE_SIZE, MinFace, parse_min_face

DEFAULT_CHUNK_SIZE = 32  # images per chunk task


@dataclass(frozen=True)
class JobOptions:
    model: str = "default"
    detector: str = DEFAULT_DETECTOR
    min_face: MinFace = MIN_FACE_SIZE
    chunk_size: int = DEFAULT_CHUNK_SIZE
    incremental: bool = True
    follow_symlinks: bool = False
    allowed_roots: tuple[str, ...] = ()
    extensions: tuple[str, ...] = DEFAULT_EXTENSIONS
    recursive: bool = True
    retry_failed: bool = False  # incremental runs: annotate again unchanged files whose latest attempt failed
    extra: dict[str, Any] = field(default_factory=dict)  # other keys (the model's name and version), kept as they are

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> JobOptions:
        known = {item.name for item in fields(cls)} - {"extra"}
        values: dict[str, Any] = {key: value for key, value in data.items() if key in known}
        values["incremental"] = bool(data.get("incremental"))  # jobs recorded without the key were full passes
        values["min_face"] = parse_min_face(values.get("min_face", MIN_FACE_SIZE))
        values["chunk_size"] = int(values.get("chunk_size", DEFAULT_CHUNK_SIZE))
        values["allowed_roots"] = tuple(values.get("allowed_roots", ()))
        values["extensions"] = tuple(values.get("extensions", DEFAULT_EXTENSIONS))
        return cls(**values, extra={key: value for key, value in data.items() if key not in known})

    def to_dict(self) -> dict[str, Any]:
        """The JSON of task messages and of the jobs table: keys left out where they have their default."""
        data: dict[str, Any] = {"model": self.model, "detector": self.detector, "min_face": self.min_face,
                                "allowed_roots": list(self.allowed_roots), "chunk_size": self.chunk_size,
                                "incremental": self.incremental}
        if self.follow_symlinks:
            data["follow_symlinks"] = True
        if self.extensions != DEFAULT_EXTENSIONS:
            data["extensions"] = list(self.extensions)
        if not self.recursive:
            data["recursive"] = False
        if self.retry_failed:
            data["retry_failed"] = True
        return {**data, **self.extra}

    def chunks_of(self, image_ids: list[int]) -> list[list[int]]:
        """``image_ids`` split into chunks of ``chunk_size`` (the last one shorter)."""
        return [image_ids[i : i + self.chunk_size] for i in range(0, len(image_ids), self.chunk_size)]
