"""Reading images: formats, modes, and bad files named in clear errors."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from camlens.data import ImageReadError, Preprocessing, load_images, read_image

from support import SAMPLE_IMAGES

PREPROCESS = Preprocessing(32, 32, (0.0,) * 3, (1.0,) * 3)


def test_formats_and_modes_become_rgb(tmp_path):
    gray = Image.fromarray(np.full((8, 8), 100, dtype=np.uint8), mode="L")
    gray.save(tmp_path / "gray.png")
    assert read_image(tmp_path / "gray.png").getpixel((0, 0)) == (100, 100, 100)

    rgba = np.zeros((8, 8, 4), dtype=np.uint8)
    rgba[..., 0] = 255
    rgba[:4, :, 3] = 255  # top half opaque red, bottom half fully transparent
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "rgba.png")
    image = read_image(tmp_path / "rgba.png")
    assert image.getpixel((0, 0)) == (255, 0, 0) and image.getpixel((0, 7)) == (255, 255, 255)

    deep = Image.fromarray(np.full((8, 8), 65535, dtype=np.uint16))
    deep.save(tmp_path / "deep.png")
    assert Image.open(tmp_path / "deep.png").mode.startswith("I")
    assert read_image(tmp_path / "deep.png").getpixel((0, 0)) == (255, 255, 255)  # scaled, not clipped
    half = Image.fromarray(np.full((8, 8), 32768, dtype=np.uint16))
    half.save(tmp_path / "half.png")
    assert read_image(tmp_path / "half.png").getpixel((0, 0)) == (128, 128, 128)

    Image.new("RGB", (8, 8), (10, 200, 30)).save(tmp_path / "photo.webp", lossless=True)
    assert read_image(tmp_path / "photo.webp").getpixel((3, 3)) == (10, 200, 30)


def test_missing_corrupt_and_truncated_files_are_named(tmp_path):
    with pytest.raises(ImageReadError, match=r"nothing\.jpg: no such file"):
        read_image(tmp_path / "nothing.jpg")
    (tmp_path / "text.jpg").write_text("this is not a JPEG")
    with pytest.raises(ImageReadError, match=r"text\.jpg: not an image file"):
        read_image(tmp_path / "text.jpg")
    data = (SAMPLE_IMAGES / "owl.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 3])
    with pytest.raises(ImageReadError, match=r"cut\.jpg: corrupt or truncated image"):
        read_image(tmp_path / "cut.jpg")


def test_decompression_bombs_are_refused(tmp_path):
    Image.new("1", (10_000, 10_000)).save(tmp_path / "bomb.png")  # 10⁸ pixels in a few kB
    assert (tmp_path / "bomb.png").stat().st_size < 100_000
    with pytest.raises(ImageReadError, match=r"bomb\.png: .*decompression bomb"):
        read_image(tmp_path / "bomb.png")
    Image.new("RGB", (100, 100)).save(tmp_path / "small.png")
    with pytest.raises(ImageReadError, match="100×100 pixels exceeds the limit of 5000"):
        read_image(tmp_path / "small.png", max_pixels=5000)


def test_folder_mode_reports_and_skips_bad_files_keeping_the_rest(tmp_path):
    for name in ("a.jpg", "b.png"):
        Image.new("RGB", (40, 30), (200, 0, 0)).save(tmp_path / name)
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really")
    (tmp_path / "notes.txt").write_text("ignored: not an image suffix")
    batch = load_images([tmp_path], PREPROCESS)
    assert [p.name for p in batch.paths] == ["a.jpg", "b.png"]
    assert batch.tensor.shape == (2, 3, 32, 32) and len(batch.originals) == 2
    assert [f.path.name for f in batch.failures] == ["broken.jpg"]
    assert abs(float(batch.tensor[0, 0].mean()) - 200 / 255) < 0.01
    with pytest.raises(ImageReadError, match="broken.jpg"):
        load_images([tmp_path], PREPROCESS, skip_errors=False)
