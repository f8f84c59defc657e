"""Transformers on the command line (issue 14): timm and torchvision ViTs with a user's weights
file, explained end to end with the token layout found automatically, and ``camlens layers``
showing token layers with their grids."""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image

from camlens.cli import main

from support import SAMPLE_IMAGES

OWL = SAMPLE_IMAGES / "owl.jpg"


@pytest.mark.parametrize("model,layer", [("timm:vit_tiny_patch16_224", "blocks.11.norm1"),
                                         ("torchvision:vit_b_16", "encoder.layers.encoder_layer_11.ln_1")])
def test_explain_a_vit_with_its_weights_file(tmp_path, model, layer):
    source, name = model.split(":")
    torch.manual_seed(0)
    if source == "timm":
        network = pytest.importorskip("timm").create_model(name, pretrained=False)
    else:
        network = getattr(pytest.importorskip("torchvision").models, name)()
        torch.nn.init.normal_(network.heads.head.weight, std=0.02)  # torchvision starts it at zero
    torch.save(network.state_dict(), tmp_path / "weights.pth")
    out = tmp_path / "out"
    assert main(["explain", str(OWL), "--model", model, "--weights", str(tmp_path / "weights.pth"), "--out", str(out),
                 "--methods", "gradcam,layercam", "--format", "png"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["layer"] == layer
    record = manifest["images"][0]
    overlay = Image.open(out / record["outputs"][0])
    assert overlay.size == Image.open(OWL).size  # at the photo's resolution
    maps = torch.load(out / "owl_jpg" / "maps.pt", weights_only=True)
    assert maps["layer_maps"]["gradcam"].shape[-2:] == (14, 14)


def test_layers_lists_token_layers_with_their_grids(capsys):
    pytest.importorskip("timm")
    assert main(["layers", "timm:vit_tiny_patch16_224"]) == 0
    out = capsys.readouterr().out
    assert "'auto' finds: blocks.11.norm1" in out
    assert "blocks.11.norm1                          LayerNorm              (1, 197, 192)  1 prefix + 14×14 patch tokens" in out
