"""The ``camlens`` command on real photos, and every kind of bad input."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from camlens.cli import main

from support import SAMPLE_IMAGES


def test_explain_writes_overlays_grids_maps_and_a_reproducible_manifest(tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["explain", str(SAMPLE_IMAGES / "parrot.jpg"), str(SAMPLE_IMAGES / "owl.jpg"),
                 "--methods", "gradcam,xgradcam,guided_gradcam", "--target", "top2", "--out", str(out), "--boxes"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "parrot" in printed and "1. " in printed and "5. " in printed  # the top-5 table
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["model"] == "efficientnet-lite0" and manifest["layer"] == "_head_act"
    assert manifest["methods"] == ["gradcam", "xgradcam", "guided_gradcam"]
    assert {"torch", "numpy", "camlens", "python"} <= set(manifest["versions"])
    parrot = manifest["images"][0]
    assert len(parrot["classes"]) == 2 and parrot["classes"][0]["name"] == parrot["top5"][0]["name"]
    assert len(parrot["outputs"]) == 3 * 2 + 2  # method × class overlays, the grid, the raw maps
    for relative in parrot["outputs"]:
        assert (out / relative).is_file()
        if not relative.endswith(".pt"):
            with Image.open(out / relative) as image:
                assert image.format == "JPEG"  # the default --format
                image.verify()
    overlay = np.asarray(Image.open(out / parrot["outputs"][0])).astype(int)
    assert overlay.shape[:2] == Image.open(SAMPLE_IMAGES / "parrot.jpg").size[::-1]  # at the original resolution
    lime = (overlay[..., 1] > 200) & (overlay[..., 0] < 60) & (overlay[..., 2] < 60)
    assert lime.sum() > 100  # --boxes drew the localization box
    assert manifest["overview"] == ["overview-001.png"]
    with Image.open(out / manifest["overview"][0]) as picture:  # one row per image, one column per method
        picture.verify()
    maps = torch.load(out / "parrot_jpg" / "maps.pt", weights_only=True)
    assert maps["maps"]["gradcam"].shape == (2, 224, 224) and maps["classes"].tolist() == [c["index"] for c in parrot["classes"]]


def _peak_row_in_original(out, stem, manifest, size):
    maps = torch.load(out / stem / "maps.pt", weights_only=True)["maps"]["gradcam"][0]
    row = int(maps.flatten().argmax()) // maps.shape[1]
    x0, y0, x1, y1 = manifest["images"][0]["crop_box"]
    return y0 + (row + 0.5) * (y1 - y0) / maps.shape[0], size[1]


@pytest.mark.parametrize("target,half", [("boxer", "top"), ("tiger cat", "bottom")])
def test_cat_dog_maps_peak_on_the_named_animal(shared_data, tmp_path, target, half):
    """The Grad-CAM paper's photo: the boxer sits in the top half, the tiger cat lies in the bottom half."""
    photo = shared_data("gradcam_classics/cat_dog.jpg")
    out = tmp_path / target.replace(" ", "_")
    assert main(["explain", str(photo), "--target", target, "--methods", "gradcam", "--out", str(out)]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["images"][0]["classes"][0]["index"] == {"boxer": 242, "tiger cat": 282}[target]
    y, height = _peak_row_in_original(out, "cat_dog_jpg", manifest, Image.open(photo).size)
    assert (y < height / 2) if half == "top" else (y > height / 2), f"peak at y = {y:.0f} of {height}"


def test_models_and_layers_commands(capsys):
    assert main(["models"]) == 0
    listing = capsys.readouterr().out
    assert "efficientnet-lite0" in listing and "mobilenet-v2" in listing and "torchvision:NAME" in listing
    assert main(["layers", "efficientnet-lite0"]) == 0
    layers = capsys.readouterr().out
    assert "'auto' finds: _head_act" in layers
    assert "* _head_act" in layers and "(1, 1280, 7, 7)" in layers and "(1, 1000)" in layers


@pytest.mark.parametrize(
    "arguments,message",
    [
        (["--model", "resnet-9000"], "unknown model 'resnet-9000'"),
        (["--target", "tigr cat"], "unknown class name 'tigr cat'; did you mean 'tiger cat'"),
        (["--target", "crane"], "class name 'crane' is ambiguous: indices 134, 517"),
        (["--target", "1000"], "class index 1000 is out of range"),
        (["--layer", "_head_akt"], "layer '_head_akt' not found in EfficientNetLite. Did you mean '_head_act'"),
        (["--methods", "gradcam,scorcam"], "unknown method 'scorcam'. Did you mean 'scorecam'"),
        (["--model", "mobilenet-v2"], "mobilenet-v2 needs weights=PATH"),
    ],
)
def test_bad_usage_exits_2_with_a_clear_message(tmp_path, capsys, arguments, message):
    code = main(["explain", str(SAMPLE_IMAGES / "owl.jpg"), "--out", str(tmp_path), *arguments])
    assert code == 2
    assert message in capsys.readouterr().err


def test_missing_and_corrupt_inputs_exit_1_naming_them_and_keep_the_rest(tmp_path, capsys):
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes((SAMPLE_IMAGES / "owl.jpg").read_bytes()[:2000])
    out = tmp_path / "out"
    code = main(["explain", str(SAMPLE_IMAGES / "owl.jpg"), str(corrupt), str(tmp_path / "missing.png"),
                 "--methods", "gradcam", "--out", str(out)])
    assert code == 1
    err = capsys.readouterr().err
    assert "corrupt.jpg: corrupt or truncated image" in err and "missing.png: no such file" in err
    manifest = json.loads((out / "manifest.json").read_text())
    assert [image["file"].rsplit("/", 1)[-1] for image in manifest["images"]] == ["owl.jpg"]
    assert {f["file"].rsplit("/", 1)[-1] for f in manifest["failures"]} == {"corrupt.jpg", "missing.png"}
    assert main(["explain", str(tmp_path / "missing.png"), "--out", str(tmp_path / "again")]) == 1  # none readable


def test_help_and_argparse_errors_from_the_installed_command():
    completed = subprocess.run([sys.executable, "-m", "camlens", "explain", "--help"], capture_output=True, text=True)
    assert completed.returncode == 0
    assert "examples:" in completed.stdout and "--target" in completed.stdout and "tiger cat" in completed.stdout
    completed = subprocess.run([sys.executable, "-m", "camlens", "explain"], capture_output=True, text=True)
    assert completed.returncode == 2 and "the following arguments are required: images" in completed.stderr
