"""The face detectors by name and what each needs (light: the CLI reads it at start-up, before OpenCV)."""

from __future__ import annotations

import importlib.util

# name -> the optional package it needs (None: OpenCV alone)
DETECTOR_PACKAGES: dict[str, str | None] = {"haar-verified": None, "haar": None, "haar-fine": None, "haar-alt2": None, "mtcnn": "mtcnn"}
DEFAULT_DETECTOR = "haar-verified"


def detector_problem(name: str) -> str | None:
    """Why the detector ``name`` cannot run here (unknown, or its package is not installed); None when it can."""
    if name not in DETECTOR_PACKAGES:
        return f"unknown detector {name!r}; available: {', '.join(available_detectors())}"
    package = DETECTOR_PACKAGES[name]
    if package is not None and importlib.util.find_spec(package) is None:
        return (f"detector {name!r} needs the {package} package, which is not installed (pip install {package}); "
                f"available: {', '.join(available_detectors())}")
    return None


def available_detectors() -> list[str]:
    """The detectors that can run here, the default first."""
    return [name for name, package in DETECTOR_PACKAGES.items()
            if package is None or importlib.util.find_spec(package) is not None]
