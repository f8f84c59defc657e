"""README's showcase (issue 17, item 8): the command under the picture, run on the Grad-CAM
paper's boxer-and-tiger-cat photo, shows what the caption says — Grad-CAM and Guided Grad-CAM
are class-discriminative, Guided Backpropagation is not, and the boxer's counterfactual map lies
on the cat. The regions are drawn by hand on the 640×480 photo."""

from __future__ import annotations

import json
import re
import shlex

import torch

from camlens.cli import main
from camlens.data import map_in_photo
from camlens.metrics.localization import boxes_mask

from support import REPO

SIZE = (640, 480)
DOG = boxes_mask([(222, 28, 472, 255)], SIZE[::-1])                           # head and chest, above the cat
CAT = boxes_mask([(128, 318, 570, 480), (400, 255, 495, 318)], SIZE[::-1])    # body, and the head beside the dog


def readme_command() -> list[str]:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    found = re.search(r"\(docs/images/cat_dog_grid\.jpg\)\n\*`(camlens explain cat_dog\.jpg [^`]*)`", readme)
    assert found, "README's showcase picture and its command are gone"
    return shlex.split(found.group(1))[1:]


def share(saliency: torch.Tensor, box, region: torch.Tensor) -> float:
    """The share of a map's magnitude, drawn back on the photo, inside ``region``."""
    on_photo, (x0, y0, x1, y1) = map_in_photo(saliency.abs().float(), box, SIZE)
    full = torch.zeros(SIZE[1], SIZE[0])
    full[y0:y1, x0:x1] = on_photo
    return float(full[region].sum() / full.sum())


def test_the_showcase_command_shows_what_its_caption_says(tmp_path, shared_data):
    photo = shared_data("gradcam_classics/cat_dog.jpg")
    arguments = [str(photo) if a == "cat_dog.jpg" else a for a in readme_command()]
    assert main([*arguments, "--out", str(tmp_path)]) == 0
    assert (tmp_path / "cat_dog_jpg" / "grid.jpg").is_file()
    box = json.loads((tmp_path / "manifest.json").read_text())["images"][0]["crop_box"]
    saved = torch.load(tmp_path / "cat_dog_jpg" / "maps.pt", weights_only=True)
    assert saved["classes"].tolist() == [242, 282]  # boxer, tiger cat
    maps = saved["maps"]
    for method in ("gradcam", "guided_gradcam"):  # class-discriminative: each class on its animal
        boxer, cat = maps[method]
        assert share(boxer, box, DOG) > 0.6 and share(boxer, box, CAT) < 0.2, method
        assert share(cat, box, CAT) > 0.6 and share(cat, box, DOG) < 0.2, method
    correlation = lambda m: float(torch.corrcoef(maps[m].flatten(1))[0, 1])  # noqa: E731
    assert correlation("guided_backprop") > 0.8 and correlation("guided_gradcam") < 0.5  # measured 0.92, 0.12
    assert share(maps["gradcam_counterfactual"][0], box, CAT) > 0.8  # what lowers "boxer" is the cat (0.95)
