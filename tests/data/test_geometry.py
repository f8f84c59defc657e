"""Boxes and masks carried from the photo's pixels through the preprocessing's resize and center crop."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from camlens.data import Preprocessing, boxes_in_input, mask_in_input
from camlens.metrics import localization as loc

PREPROCESSING = Preprocessing(resize=256, crop=224, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))


def test_boxes_follow_resize_and_center_crop():
    # 512×512 → resized to 256×256 (scale ½) → cropped at offset 16
    assert boxes_in_input([(64, 96, 256, 320)], (512, 512), PREPROCESSING) == [(16.0, 32.0, 112.0, 144.0)]
    # 600×400 → 384×256 (scale 0.64) → crop x from 80: a box reaching past the crop is clipped,
    # one entirely left of it is dropped
    boxes = boxes_in_input([(125, 50, 600, 400), (0, 0, 100, 100)], (600, 400), PREPROCESSING)
    assert boxes == [(0.0, 32.0 - 16, 224.0, 224.0)]


def test_masks_follow_resize_and_center_crop(tmp_path):
    values = np.zeros((512, 512), dtype=np.uint8)
    values[96:320, 64:256] = 3      # the object, VOC index 3
    values[0:8, :] = 255            # VOC's border label: not the object
    Image.fromarray(values).save(tmp_path / "mask.png")
    mask = mask_in_input(tmp_path / "mask.png", PREPROCESSING)
    assert mask.shape == (224, 224) and mask.dtype == torch.bool
    expected = loc.boxes_mask(boxes_in_input([(64, 96, 256, 320)], (512, 512), PREPROCESSING), (224, 224))
    assert torch.equal(mask, expected)
    assert mask_in_input(tmp_path / "mask.png", PREPROCESSING, foreground=[7]).sum() == 0
