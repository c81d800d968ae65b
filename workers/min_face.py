"""The smallest face to look for: pixels (the default, 48: the classifier's input size) or a share of the photo.

Kept free of heavy imports: the CLI parses `--min-face` with it at start-up.
"""

from __future__ import annotations

MIN_FACE_SIZE = 48  # the classifier's input size
MinFace = int | str  # pixels, or a share of the photo's shorter side such as "2%"
# A relative smallest face never goes below the detector's reach.
RELATIVE_MIN_FACE_FLOOR = 24


def parse_min_face(value: MinFace) -> MinFace:
    """48 or "48" -> 48 (pixels, at least 20); "2%" -> "2%" (0-100 % of the shorter side). ValueError otherwise."""
    text = str(value).strip()
    if text.endswith("%"):
        share = float(text[:-1])
        if not 0 < share <= 100:
            raise ValueError(f"a relative minimum face is a share of the photo's shorter side, 0-100%: {value!r}")
        return f"{share:g}%"
    pixels = int(text)
    if pixels < 20:
        raise ValueError(f"the smallest face is at least 20 pixels (the detectors' window): {value!r}")
    return pixels


def min_face_pixels(min_face: MinFace, width: int, height: int) -> int:
    """The smallest face to look for in a width x height photo, in its pixels."""
    if isinstance(min_face, str) and min_face.endswith("%"):
        return max(RELATIVE_MIN_FACE_FLOOR, round(float(min_face[:-1]) / 100 * min(width, height)))
    return int(min_face)
