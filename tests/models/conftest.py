"""What the text models' tests share: the street-sign photo of the shared data."""

from __future__ import annotations

import pytest
from PIL import Image


@pytest.fixture(scope="session")
def street_sign(shared_data) -> Image.Image:
    """``imagenet_sample_1000``'s street sign (Nantucket's signpost: a dozen words on eight boards)."""
    return Image.open(shared_data("imagenet_sample_1000/n06794110_street_sign.JPEG")).convert("RGB")
