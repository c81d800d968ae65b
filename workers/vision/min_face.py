"""The smallest face to look for: pixels (48 by default) or a share of the photo.

Kept free of heavy imports: the CLI parses `--min-face` with it at start-up.
"""

from __future__ import annotations

# Every model takes faces as FER2013's 48x48 crops (fer_model.faces) and resizes them to its own input inside
# (40 to 48 px, by recipe). A face found smaller than 48 px is upscaled to 48x48, so it carries less detail
# than the faces the models learned from: 48 px is the smallest face whose crop loses nothing.
MIN_FACE_SIZE = 48
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
