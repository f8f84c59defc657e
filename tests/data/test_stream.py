"""Which files a list of sources names, and photos streamed in batches with bounded look-ahead."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

from camlens.data import Preprocessing, image_paths, stream_photos

PREPROCESS = Preprocessing(resize=32, crop=28, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))


def test_image_paths_expand_folders_patterns_and_csv_lists_in_order_each_once(tmp_path):
    (tmp_path / "b").mkdir()
    for name in ("b/2.png", "b/1.JPG", "a.jpg", "notes.txt"):
        (tmp_path / name).write_bytes(b"")
    listing = tmp_path / "list.csv"
    listing.write_text("path,label\na.jpg,1\na.jpg,2\n/elsewhere/x.png,3\n")
    assert image_paths([tmp_path / "b", listing, str(tmp_path / "*.jpg"), tmp_path / "missing.png"]) == [
        tmp_path / "b" / "1.JPG", tmp_path / "b" / "2.png",  # a folder: its images, sorted, not notes.txt
        tmp_path / "a.jpg", Path("/elsewhere/x.png"),  # the CSV's, each once
        tmp_path / "missing.png",  # kept, so that reading it says "no such file"
    ]
    assert image_paths([str(tmp_path / "*.webp")]) == [tmp_path / "*.webp"]  # matches nothing: kept as named
    (tmp_path / "bad.csv").write_text("name,label\na.jpg,1\n")
    with pytest.raises(ValueError, match="no image column; expected one of file, filename, image, path"):
        image_paths([tmp_path / "bad.csv"])


def _photos(folder, count: int) -> list:
    paths = []
    for index in range(count):
        path = folder / f"{index:03d}.png"
        Image.new("RGB", (40 + index, 30), (index * 3 % 256, 0, 0)).save(path)
        paths.append(path)
    return paths


@pytest.mark.parametrize("workers", [0, 3])
def test_photos_are_read_only_a_bounded_stretch_ahead_of_the_consumer(tmp_path, workers):
    paths = _photos(tmp_path, 40)
    pulled = []

    def lazily():
        for path in paths:
            pulled.append(path)
            yield path

    batch_size = 4
    consumed = 0
    for batch in stream_photos(lazily(), PREPROCESS, batch_size=batch_size, workers=workers):
        consumed += len(batch.photos)
        # read so far: what was consumed, plus at most two batches and a photo per worker ahead
        assert len(pulled) <= consumed + 2 * batch_size + workers + 1
    assert consumed == 40 and len(pulled) == 40


def test_streamed_batches_equal_the_photos_preprocessed_one_by_one_and_report_bad_files(tmp_path):
    paths = _photos(tmp_path, 7)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    sources = paths[:3] + [broken] + paths[3:]
    batches = list(stream_photos(sources, PREPROCESS, batch_size=3, workers=2, max_side=20))
    assert [len(b.photos) for b in batches] == [3, 3, 1]
    assert [f.path for b in batches for f in b.failures] == [broken]
    photos = [photo for b in batches for photo in b.photos]
    assert [photo.path for photo in photos] == paths
    expected = torch.stack([PREPROCESS(Image.open(p)) for p in paths])
    torch.testing.assert_close(torch.cat([b.tensor for b in batches]), expected, rtol=0, atol=0)
    first = photos[0]  # 40×30 shown at most 20 wide: scale 0.5, and the crop box in the file's pixels
    assert first.size == (40, 30) and first.image.size == (20, 15) and first.scale == 0.5
    assert first.crop_box == PREPROCESS.crop_box((40, 30))
    assert first.display_box == tuple(v / 2 for v in first.crop_box)
    with pytest.raises(ValueError, match="batch_size must be at least 1"):
        next(stream_photos(paths, PREPROCESS, batch_size=0))
