"""``--fit crop|resize|pad`` on the command line and ``load(..., fit=)`` in Python (issue 17,
item 7): with resize and pad the model — and the map — see the whole photo, including what the
center crop cuts off; the choice is part of what a run records and resumes under."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

import camlens
from camlens.cli import main
from camlens.data import map_in_photo

from support import SAMPLE_IMAGES, photo_dataset


@pytest.fixture(scope="module")
def parrot_at_the_edge(tmp_path_factory):
    """The parrot photo in the left third of a wide gray canvas: a center crop cuts it off."""
    parrot = Image.open(SAMPLE_IMAGES / "parrot.jpg").convert("RGB")
    parrot = parrot.resize((round(parrot.width * 300 / parrot.height), 300))
    canvas = Image.new("RGB", (3 * parrot.width, 300), (128, 128, 128))
    canvas.paste(parrot, (0, 0))
    path = tmp_path_factory.mktemp("wide") / "wide.png"
    canvas.save(path)
    return path, (0, 0, parrot.width, 300)


@pytest.mark.parametrize("fit", ["resize", "pad"])
def test_resize_and_pad_let_the_map_find_what_the_crop_cuts_off(parrot_at_the_edge, fit, lite0):
    """EfficientNet-Lite0 on the wide canvas: with the center crop (x 116–379 of 495) most of the
    parrot is out of sight and 88 (macaw) is not the top class; with resize and pad the whole
    photo is seen, 88 is the top class (p ≈ 0.8), and Grad-CAM's map for it, drawn back on the
    photo, covers all of it, peaks within one map cell (495/7 px) of the parrot and puts more of
    its energy on the parrot's third of the canvas than a uniform map would (measured 0.45/0.50)."""
    path, parrot_box = parrot_at_the_edge
    photo = camlens.read_image(path)
    cropped = camlens.load("efficientnet-lite0")
    assert cropped.preprocessing.crop_box(photo.size)[0] > 0.7 * parrot_box[2]
    with torch.inference_mode():
        assert int(cropped.model(cropped.preprocessing(photo)[None]).argmax()) != 88
    loaded = camlens.load("efficientnet-lite0", fit=fit)
    assert loaded.preprocessing.fit == fit
    images = loaded.preprocessing(photo)[None]
    with torch.inference_mode():
        assert int(loaded.model(images).argmax()) == 88
    explanation = camlens.explain(loaded.model, images, layer=loaded.layer, methods=("gradcam",), target=88)
    on_photo, (x0, y0, x1, y1) = map_in_photo(explanation.maps["gradcam"][0], loaded.preprocessing.crop_box(photo.size), photo.size)
    assert (x0, y0, x1, y1) == (0, 0, *photo.size)  # the map covers the whole photo
    cell = photo.width / explanation.layer_maps["gradcam"].shape[-1]
    _, peak_x = np.unravel_index(int(on_photo.argmax()), on_photo.shape)
    assert peak_x < parrot_box[2] + cell
    share = parrot_box[2] / photo.width
    assert float(on_photo[:, : parrot_box[2]].clamp(min=0).sum() / on_photo.clamp(min=0).sum()) > 1.3 * share


def test_explain_records_the_fit_and_a_resume_with_another_is_refused(tmp_path, capsys, parrot_at_the_edge):
    path, _ = parrot_at_the_edge
    out = tmp_path / "out"
    assert main(["explain", str(path), "--out", str(out), "--methods", "gradcam", "--fit", "pad"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["fit"] == "pad" and manifest["preprocessing"]["fit"] == "pad"
    x0, y0, x1, y1 = manifest["images"][0]["crop_box"]
    width, height = manifest["images"][0]["size"]
    assert (x0, x1) == (0, width) and y0 < 0 and y1 > height  # the padded square reaches past the photo
    assert main(["explain", str(path), "--out", str(out), "--methods", "gradcam", "--fit", "resize", "--resume"]) == 2
    assert "fit: 'pad' then, 'resize' now" in capsys.readouterr().err


def test_an_unknown_fit_is_a_usage_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["explain", str(SAMPLE_IMAGES / "owl.jpg"), "--out", str(tmp_path / "o"), "--fit", "squash"])
    assert exit_.value.code == 2 and "invalid choice: 'squash'" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_evaluate_records_the_fit_and_refuses_to_resume_under_another(tmp_path, capsys):
    dataset = photo_dataset(tmp_path)
    arguments = ["evaluate", str(dataset), "--out", str(tmp_path / "eval"), "--methods", "gradcam", "--metrics",
                 "localization", "--limit", "1"]
    assert main([*arguments, "--fit", "resize"]) == 0
    assert json.loads((tmp_path / "eval" / "protocol.json").read_text())["fit"] == "resize"
    assert main(arguments) == 2
    assert "(fit differ)" in capsys.readouterr().err


def test_a_protocol_recorded_before_fit_existed_resumes_as_crop(tmp_path):
    dataset = photo_dataset(tmp_path)
    arguments = ["evaluate", str(dataset), "--out", str(tmp_path / "eval"), "--methods", "gradcam", "--metrics",
                 "localization", "--limit", "1"]
    assert main(arguments) == 0
    protocol = tmp_path / "eval" / "protocol.json"
    recorded = json.loads(protocol.read_text())
    del recorded["fit"]
    protocol.write_text(json.dumps(recorded))
    assert main(arguments) == 0
