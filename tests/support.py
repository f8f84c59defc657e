"""What the tests share beyond fixtures: where the real data lives, and small helpers."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
DATA_DIR = Path(os.environ.get("CAMLENS_DATA", REPO.parent / "shared" / "data"))
SAMPLE_IMAGES = REPO / "examples" / "images"
MOBILENET_WEIGHTS = "weights_mobilenet_v2/mobilenet_v2_tf2ptq_dequant_fp32_torchvision_layout.pth"


def random_images(batch: int, size: int = 224, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 3, size, size, generator=generator)


def as_numpy(tensor: torch.Tensor) -> np.ndarray:
    return tensor.detach().double().cpu().numpy()


def photo_dataset(folder: Path) -> Path:
    """The sample photos with their ImageNet labels and a rough box each (the middle of the
    photo, in the file's pixels)."""
    from PIL import Image

    rows = ["file,class_index,x0,y0,x1,y1"]
    for name, label in (("parrot.jpg", 88), ("owl.jpg", 24), ("hot_dog.jpg", 934)):
        width, height = Image.open(SAMPLE_IMAGES / name).size
        rows.append(f"{SAMPLE_IMAGES / name},{label},{width / 4},{height / 4},{3 * width / 4},{3 * height / 4}")
    path = folder / "photos.csv"
    path.write_text("\n".join(rows) + "\n")
    return path
