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
