"""How a photo fits the model's square (crop, resize, pad), and where the square lies in the
photo: the tensor, the boxes, the masks and the overlays must all agree on it."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from camlens.data import Preprocessing, boxes_in_input, mask_in_input
from camlens.report import overlay

MEAN, STD = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)


def preprocessing(fit: str) -> Preprocessing:
    return Preprocessing(resize=256, crop=224, mean=MEAN, std=STD, fit=fit)


def photo_with_square(size=(600, 400), square=(500, 100, 590, 300)) -> Image.Image:
    """A gray photo with a white rectangle near its right edge (outside the central crop)."""
    pixels = np.full((size[1], size[0], 3), 128, dtype=np.uint8)
    x0, y0, x1, y1 = square
    pixels[y0:y1, x0:x1] = 255
    return Image.fromarray(pixels)


def white_box(tensor: torch.Tensor) -> tuple[int, int, int, int] | None:
    """The bounding box of the (normalized) white pixels of a (3, H, W) input."""
    ys, xs = torch.nonzero(tensor[0] > 0.5, as_tuple=True)
    if len(xs) == 0:
        return None
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def test_crop_is_unchanged_resize_short_side_then_center_crop():
    image = photo_with_square()
    resized = image.resize((384, 256), Image.BILINEAR).crop((80, 16, 304, 240))
    expected = (torch.from_numpy(np.array(resized, dtype=np.float32)).permute(2, 0, 1) / 255 - 0.5) / 0.5
    assert torch.equal(preprocessing("crop")(image), expected)
    assert preprocessing("crop").crop_box((600, 400)) == pytest.approx((125.0, 25.0, 475.0, 375.0))


@pytest.mark.parametrize("fit, seen", [("crop", None), ("resize", (187, 56, 220, 168)),
                                       ("pad", (187, 74, 220, 149))])
def test_each_fit_puts_the_photo_where_its_crop_box_says(fit, seen):
    """600×400 photo, white square at x 500–590, y 100–300. crop: 384×256, offset (80, 16) — the
    square lies at x 320–377.6, past the crop's right edge (304), so the model never sees it.
    resize: ×(224/600, 224/400) → x 186.7–220.3, y 56–168. pad: ×224/600 to 224×149, 37 rows of padding
    above → x 186.7–220.3, y 37.3+37 = 74.3 … 112+37 = 149."""
    fitting = preprocessing(fit)
    tensor = fitting(photo_with_square())
    box = boxes_in_input([(500, 100, 590, 300)], (600, 400), fitting)
    if fit == "crop":
        assert white_box(tensor) is None and box == []
        return
    found = white_box(tensor)
    assert found is not None and np.allclose(found, seen, atol=1)
    assert np.allclose(box[0], seen, atol=1)  # the box carried through crop_box lands on the same pixels


def test_pad_fills_with_zeros_after_normalization_and_its_box_reaches_past_the_photo():
    fitting = preprocessing("pad")
    tensor = fitting(Image.new("RGB", (600, 400), (255, 255, 255)))
    assert torch.equal(tensor[:, :37], torch.zeros(3, 37, 224)) and torch.equal(tensor[:, -38:], torch.zeros(3, 38, 224))
    assert torch.all(tensor[:, 37:186] == 1.0)  # the photo: 224 × 149 rows of white
    x0, y0, x1, y1 = fitting.crop_box((600, 400))
    assert (x0, x1) == pytest.approx((0.0, 600.0)) and y0 == pytest.approx(-37 * 400 / 149) and y1 > 400
    assert fitting.crop_box((300, 300)) == pytest.approx((0.0, 0.0, 300.0, 300.0))  # a square photo: no padding
    assert preprocessing("resize").crop_box((600, 400)) == pytest.approx((0.0, 0.0, 600.0, 400.0))


def test_padding_is_never_the_object_of_a_mask(tmp_path):
    """Pet masks use index 0 for the pet: the padding (also 0) must not become pet."""
    values = np.ones((400, 600), dtype=np.uint8)  # 1 = background
    values[100:300, 500:590] = 0                  # the pet
    Image.fromarray(values).save(tmp_path / "mask.png")
    for fit in ("pad", "resize", "crop"):
        fitting = preprocessing(fit)
        mask = mask_in_input(tmp_path / "mask.png", fitting, foreground=[0])
        expected = white_box(fitting(photo_with_square()))
        found = white_box(mask[None].float())
        assert found == expected, fit


def test_an_unknown_fit_is_refused():
    with pytest.raises(ValueError, match="fit must be one of crop, resize, pad, not 'squash'"):
        preprocessing("squash")


def test_a_padded_overlay_draws_the_map_on_the_photo_only_and_in_place():
    """A map hot on the photo's white square only: on the overlay the colour sits on the square,
    and the map's padded rows (above and below the photo) are not drawn."""
    fitting = preprocessing("pad")
    photo = photo_with_square()
    saliency = torch.zeros(224, 224)
    saliency[74:149, 187:220] = 1.0   # where the square lies in the padded input
    saliency[:37] = 1.0               # the padding above the photo: must not appear
    drawn = np.asarray(overlay(photo, saliency, box=fitting.crop_box(photo.size), cmap="gray", alpha=1.0))[..., 0]
    assert drawn.shape == (400, 600)
    ys, xs = np.nonzero(drawn > 127)
    assert abs(xs.min() - 500) <= 4 and abs(xs.max() - 589) <= 4 and abs(ys.min() - 100) <= 4 and abs(ys.max() - 299) <= 4


def test_a_rectangular_input_fits_a_word_crop_by_each_fit():
    """A 100×25 photo of a word into a reader's 48×320 input (height × width)."""
    word = Image.new("RGB", (100, 25), (255, 255, 255))
    padded = Preprocessing(48, 48, MEAN, STD, fit="pad", width=320)
    assert padded.size == (48, 320)
    # pad: scaled by min(320/100, 48/25) = 1.92 to 192×48, centred: 64 pixels of padding either side
    assert padded.placement(word.size) == (192, 48, 64, 0)
    tensor = padded(word)
    assert tensor.shape == (3, 48, 320)
    assert (tensor[:, :, :64] == 0).all() and (tensor[:, :, 64:256] == 1).all() and (tensor[:, :, 256:] == 0).all()
    assert padded.crop_box(word.size) == pytest.approx((-64 / 1.92, 0, 256 / 1.92, 25))
    assert boxes_in_input([(0, 0, 50, 25)], word.size, padded) == [pytest.approx((64, 0, 160, 48))]
    # resize stretches to the rectangle; crop covers it (scale max(3.2, 1.92) = 3.2: 320×80) and cuts 16 rows each side
    assert Preprocessing(48, 48, MEAN, STD, fit="resize", width=320).placement(word.size) == (320, 48, 0, 0)
    assert Preprocessing(48, 48, MEAN, STD, fit="crop", width=320).placement(word.size) == (320, 80, 0, -16)
    # a square is the rectangle of equal sides: the same placement as without width
    for fit in ("crop", "resize", "pad"):
        assert Preprocessing(256, 224, MEAN, STD, fit=fit, width=224).placement((640, 480)) == \
            preprocessing(fit).placement((640, 480))
