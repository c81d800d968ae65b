"""Read photos of any common format and mode as upright gray arrays for face detection.

Pillow reads the header first, so an image claiming absurd dimensions is refused before
any pixel memory is allocated; JPEGs are decoded at reduced resolution (libjpeg's DCT
scaling via ``draft``) when the caller only needs a smaller image.
"""

from __future__ import annotations

import datetime as dt
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

# Pillow itself refuses images above twice its MAX_IMAGE_PIXELS (about 179 megapixels).
DEFAULT_MAX_PIXELS = 2 * Image.MAX_IMAGE_PIXELS
EXIF_ORIENTATION = 0x0112
EXIF_IFD = 0x8769
DATE_TIME_ORIGINAL = 0x9003
DATE_TIME_DIGITIZED = 0x9004
EXIF_DATE_FORMAT = "%Y:%m:%d %H:%M:%S"


class ImageReadError(Exception):
    """The file cannot be read as an image; the message says why, for the database and the user.

    ``content`` is False when the file could not be opened (gone, permission denied) rather than
    read and found bad: only a bad content is sure to fail again while the file is unchanged.
    """

    def __init__(self, message: str, content: bool = True):
        super().__init__(message)
        self.content = content


@dataclass(frozen=True)
class LoadedImage:
    """An upright gray image, possibly decoded at reduced resolution.

    ``width`` and ``height`` are the upright original's; ``scale`` is decoded size over
    original size, so a box found at (x, y) maps back to (x / scale, y / scale); ``taken_at``
    is the photo's EXIF capture date, if it has one.
    """

    gray: np.ndarray
    width: int
    height: int
    scale: float
    taken_at: dt.datetime | None = None


def read_image(
    path: str | os.PathLike,
    *,
    max_side: int | None = None,
    min_scale: float = 0.0,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> LoadedImage:
    """Decode ``path`` to upright uint8 gray.

    With ``max_side``, a large JPEG may be decoded reduced, but never below ``max_side``
    pixels on its longer side nor below ``min_scale`` times its full size.
    """
    path = Path(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # the size check below decides
            with Image.open(path) as image:
                return _decode(image, max_side, min_scale, max_pixels)
    except ImageReadError:
        raise
    except FileNotFoundError:
        raise ImageReadError("file not found (deleted or moved since it was listed)", content=False) from None
    except PermissionError:
        raise ImageReadError("permission denied", content=False) from None
    except IsADirectoryError:
        raise ImageReadError("is a directory, not an image", content=False) from None
    except UnidentifiedImageError:
        raise ImageReadError(_unidentified_message(path)) from None
    except Image.DecompressionBombError as error:
        raise ImageReadError(f"refused: {error}") from None
    except (OSError, ValueError, SyntaxError, EOFError) as error:
        raise ImageReadError(f"damaged or truncated image ({error})") from None


def _unidentified_message(path: Path) -> str:
    if path.stat().st_size == 0:
        return "empty file (0 bytes)"
    suffix = path.suffix.lower()
    if suffix in {".heic", ".heif", ".avif"}:
        return f"unsupported format {suffix} (convert it to JPEG or PNG)"
    return "not an image, or a format this tool does not read"


def _decode(image: Image.Image, max_side: int | None, min_scale: float, max_pixels: int) -> LoadedImage:
    width, height = image.size
    if width * height > max_pixels:
        raise ImageReadError(f"refused: {width}x{height} pixels exceeds the limit of {max_pixels:,} (decompression bomb?)")
    if width < 1 or height < 1:
        raise ImageReadError(f"invalid dimensions {width}x{height}")
    upright_width, upright_height = upright_size(image)
    taken_at = exif_date_of(image)

    target_side = max(max_side or 0, max(width, height) * min_scale)
    if max_side and image.format == "JPEG" and max(width, height) >= 2 * target_side:
        # Scale by 1/2, 1/4 or 1/8 inside libjpeg: far cheaper than a full decode then resize.
        factor = max(width, height) / target_side
        image.draft("L", (int(width / factor), int(height / factor)))
    if getattr(image, "is_animated", False):
        image.seek(0)
    image = ImageOps.exif_transpose(image)
    gray = _to_gray(image)
    return LoadedImage(gray=gray, width=upright_width, height=upright_height, scale=gray.shape[1] / upright_width,
                       taken_at=taken_at)


def _to_gray(image: Image.Image) -> np.ndarray:
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        values = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I;16") or values.max() > 255 else 255.0
        return np.clip(values * (255.0 / top), 0, 255).astype(np.uint8)
    return np.asarray(on_white(image).convert("L"), dtype=np.uint8)


def upright_size(image: Image.Image) -> tuple[int, int]:
    """(width, height) as the photo is shown: EXIF orientations 5-8 turn it a quarter."""
    width, height = image.size
    return (height, width) if image.getexif().get(EXIF_ORIENTATION, 1) in (5, 6, 7, 8) else (width, height)


def on_white(image: Image.Image) -> Image.Image:
    """Transparent areas made white, as a viewer shows them on a page; images without alpha as they are."""
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba)
    return image


def exif_date_of(image: Image.Image) -> dt.datetime | None:
    """The EXIF capture date of an open image (naive, camera local time), or None: no usable EXIF date."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # odd EXIF blocks only warn; we want the date or nothing
            exif = image.getexif().get_ifd(EXIF_IFD)
    except Exception:  # Pillow raises many types on damaged EXIF blocks; a date is optional here
        return None
    for tag in (DATE_TIME_ORIGINAL, DATE_TIME_DIGITIZED):
        value = exif.get(tag)
        if isinstance(value, bytes):
            value = value.decode("ascii", "replace")
        if isinstance(value, str):
            try:
                return dt.datetime.strptime(value.strip("\x00 ")[:19], EXIF_DATE_FORMAT)
            except ValueError:
                continue  # "0000:00:00 00:00:00" and other placeholders cameras write
    return None
