"""Face thumbnails cropped from the source photos, as data: URIs of small JPEGs."""

from __future__ import annotations

import base64
import io
import math
import warnings
from dataclasses import dataclass

from PIL import Image, ImageOps

from workers.vision.images import on_white, upright_size

THUMBNAIL_SIDE = 112
# Context around the detector's box, as a share of its side: the box itself cuts off chin and hair.
MARGIN = 0.2
JPEG_QUALITY = 82


class BoxOutsidePhoto(ValueError):
    """The stored box does not overlap the photo: the file changed since it was annotated."""


@dataclass(frozen=True)
class Box:
    """A face box in the upright original image's pixels, as the faces table stores it."""

    x: int
    y: int
    w: int
    h: int


@dataclass(frozen=True)
class Thumbnail:
    """A data: URI, or None with the reason the face could not be shown."""

    data_uri: str | None
    problem: str | None = None


def face_thumbnail(path: str, box: Box, side: int = THUMBNAIL_SIDE) -> Thumbnail:
    """Crop ``box`` (plus a margin) from the photo at ``path`` and shrink it to at most ``side`` pixels."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # the pipeline already read this file
            with Image.open(path) as image:
                crop = _crop_upright(image, box, side)
    except FileNotFoundError:
        return Thumbnail(None, "source photo not found")
    except BoxOutsidePhoto:
        return Thumbnail(None, "face box outside the photo (changed since it was annotated?)")
    except PermissionError:
        return Thumbnail(None, "source photo not readable (permission denied)")
    except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError) as error:
        return Thumbnail(None, f"source photo unreadable ({type(error).__name__})")
    buffer = io.BytesIO()
    crop.save(buffer, format="JPEG", quality=JPEG_QUALITY)
    return Thumbnail("data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii"))


def _crop_upright(image: Image.Image, box: Box, side: int) -> Image.Image:
    width, height = image.size
    upright_width = upright_size(image)[0]
    if image.format == "JPEG":
        # Let libjpeg decode large photos reduced, keeping the face at least twice the thumbnail's size.
        wanted = min(1.0, 2 * side / max(box.w, 1))
        image.draft("RGB", (math.ceil(width * wanted), math.ceil(height * wanted)))
    if getattr(image, "is_animated", False):
        image.seek(0)
    upright = ImageOps.exif_transpose(image)
    scale = upright.width / upright_width
    margin = MARGIN * max(box.w, box.h)
    left = max(0, int((box.x - margin) * scale))
    top = max(0, int((box.y - margin) * scale))
    right = min(upright.width, int(math.ceil((box.x + box.w + margin) * scale)))
    bottom = min(upright.height, int(math.ceil((box.y + box.h + margin) * scale)))
    if right <= left or bottom <= top:
        raise BoxOutsidePhoto
    crop = _rgb(upright.crop((left, top, right, bottom)))
    crop.thumbnail((side, side), Image.Resampling.LANCZOS)
    return crop


def _rgb(image: Image.Image) -> Image.Image:
    if image.mode.startswith("I"):
        # 16- and 32-bit gray: scale to 8 bits before converting (Pillow would clip).
        top = 65535 if image.mode.startswith("I;16") else max(image.getextrema()[1], 1)
        return image.convert("I").point(lambda value: value * (255 / top)).convert("L").convert("RGB")
    return on_white(image).convert("RGB")
