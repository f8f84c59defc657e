"""What the tests share beyond fixtures: where the real data lives, and small helpers."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
DATA_DIR = Path(os.environ.get("CAMLENS_DATA", REPO.parent / "shared" / "data"))
SAMPLE_IMAGES = REPO / "examples" / "images"
# a real browser for the pages' tests: Debian's Chromium (Playwright's own download needs the internet)
BROWSER = next((found for name in ("chromium", "chromium-browser", "google-chrome") if (found := shutil.which(name))),
               None)
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
        with Image.open(SAMPLE_IMAGES / name) as image:
            width, height = image.size
        rows.append(f"{SAMPLE_IMAGES / name},{label},{width / 4},{height / 4},{3 * width / 4},{3 * height / 4}")
    path = folder / "photos.csv"
    path.write_text("\n".join(rows) + "\n")
    return path


def kill_camlens_when(arguments: list[str], log: Path, lines: int, poll: float = 0.02) -> None:
    """Run ``camlens ARGUMENTS`` from this checkout in a fresh process and kill it (SIGKILL, as a
    crash or an out-of-memory kill would) once the JSON-lines file ``log`` has ``lines``
    complete lines, then append a torn line, as a kill during a write leaves it. Fails the test
    if the run ends before it can be killed."""
    import signal
    import subprocess
    import sys
    import time

    from camlens.data import read_jsonl

    environment = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")]))
    process = subprocess.Popen([sys.executable, "-m", "camlens", *arguments], env=environment,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and process.poll() is None:
        if log.exists() and len(read_jsonl(log)) >= lines:
            break
        time.sleep(poll)
    assert process.poll() is None, "the run ended before it could be killed"
    process.send_signal(signal.SIGKILL)
    process.wait()
    with open(log, "a") as handle:
        handle.write('{"torn": "a line cut by the kill", "wri')
