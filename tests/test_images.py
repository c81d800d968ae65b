"""Reading photos of every common format, mode and kind of damage."""

from __future__ import annotations

import re
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from workers.vision.images import ImageReadError, read_image


def _gradient(width: int, height: int) -> np.ndarray:
    return (np.add.outer(np.arange(height), np.arange(width)) % 256).astype(np.uint8)


def test_plain_jpeg_is_read_as_gray(tmp_path):
    path = tmp_path / "a.jpg"
    Image.fromarray(np.stack([_gradient(64, 48)] * 3, axis=-1)).save(path, quality=95)
    loaded = read_image(path)
    assert loaded.gray.shape == (48, 64) and loaded.gray.dtype == np.uint8
    assert (loaded.width, loaded.height, loaded.scale) == (64, 48, 1.0)


def test_large_jpeg_is_decoded_at_reduced_resolution(tmp_path):
    path = tmp_path / "big.jpg"
    Image.fromarray(_gradient(4000, 3000)).save(path, quality=90)
    loaded = read_image(path, max_side=1000)
    assert (loaded.width, loaded.height) == (4000, 3000)
    assert loaded.gray.shape == (750, 1000) and loaded.scale == pytest.approx(0.25)


def test_exif_rotation_gives_the_upright_image(tmp_path):
    pixels = np.zeros((40, 80), np.uint8)
    pixels[:, :10] = 255  # a bright stripe on the left of the stored image
    image = Image.fromarray(pixels)
    exif = image.getexif()
    exif[0x0112] = 6  # stored rotated: display needs a 90 degree clockwise turn
    path = tmp_path / "rotated.jpg"
    image.save(path, exif=exif, quality=95)
    loaded = read_image(path)
    assert loaded.gray.shape == (80, 40) and (loaded.width, loaded.height) == (40, 80)
    assert loaded.gray[:10].mean() > 200 and loaded.gray[-10:].mean() < 50  # stripe now on top


def test_png_with_alpha_and_16_bit_png(tmp_path):
    rgba = np.zeros((10, 10, 4), np.uint8)
    rgba[..., 3] = 0  # fully transparent: shown as white
    Image.fromarray(rgba, "RGBA").save(tmp_path / "alpha.png")
    assert read_image(tmp_path / "alpha.png").gray.min() == 255

    deep = np.full((10, 10), 65535, np.uint16)
    Image.fromarray(deep).save(tmp_path / "deep.png")
    assert read_image(tmp_path / "deep.png").gray.min() == 255


def test_cmyk_jpeg_and_animated_gif_first_frame(tmp_path):
    Image.new("CMYK", (20, 10), (0, 0, 0, 0)).save(tmp_path / "cmyk.jpg")
    assert read_image(tmp_path / "cmyk.jpg").gray.mean() > 240

    frames = [Image.new("L", (8, 8), value) for value in (10, 250)]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    assert read_image(tmp_path / "anim.gif").gray.max() < 30


def test_one_pixel_image_is_read(tmp_path):
    Image.new("L", (1, 1), 128).save(tmp_path / "dot.png")
    assert read_image(tmp_path / "dot.png").gray.shape == (1, 1)


def _png_claiming(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 10)) + chunk(b"IEND", b"")


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("empty.jpg", b"", "empty file (0 bytes)"),
        ("text.jpg", b"hello, I am not a picture\n", "not an image"),
        ("photo.heic", b"\x00\x00\x00\x18ftypheic" + b"\0" * 100, "unsupported format .heic"),
        ("bomb.png", _png_claiming(50_000, 50_000), "refused"),
    ],
)
def test_unreadable_files_get_clear_messages(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ImageReadError, match=re.escape(message)):
        read_image(path)


def test_truncated_jpeg_and_missing_file(tmp_path):
    path = tmp_path / "cut.jpg"
    Image.fromarray(_gradient(200, 200)).save(path, quality=90)
    path.write_bytes(path.read_bytes()[:300])
    with pytest.raises(ImageReadError, match="damaged or truncated"):
        read_image(path)
    with pytest.raises(ImageReadError, match="file not found"):
        read_image(tmp_path / "gone.jpg")


def test_face_crop_squares_the_box_widens_it_and_replicates_edges_outside_the_photo():
    from workers.vision.cropping import face_crop

    gray = np.arange(100, dtype=np.uint8).reshape(10, 10)
    np.testing.assert_array_equal(face_crop(gray, 2, 2, 4, 4, margin=0.0), gray[2:6, 2:6])
    wide = face_crop(gray, 2, 3, 4, 2, margin=0.0)  # 4x2 box -> 4x4 square on the same centre
    np.testing.assert_array_equal(wide, gray[2:6, 2:6])
    grown = face_crop(gray, 2, 2, 4, 4, margin=0.25)  # 4 * 1.5 = 6
    np.testing.assert_array_equal(grown, gray[1:7, 1:7])
    corner = face_crop(gray, 0, 0, 4, 4, margin=0.25)  # one row and column outside, filled by the edge
    assert corner.shape == (6, 6)
    np.testing.assert_array_equal(corner[1:, 1:], gray[0:5, 0:5])
    np.testing.assert_array_equal(corner[0, 1:], gray[0, 0:5])
