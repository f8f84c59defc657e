"""Textual explanations from neuron importance: Network Dissection's IoU in closed form, the
sentence from Grad-CAM's weights on a hand-built head, and on scenes how often the top channels'
concepts are the class they explain."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

import camlens
from camlens.cli import main
from camlens.data.scenes import scene_concepts, scene_tensors, scenes
from camlens.evaluate.concepts import chance_agreement, concept_agreement, dissect, neuron_text, scene_texts
from camlens.targets import Classes


def two_channel_model(head: list[list[float]] | None = None) -> nn.Module:
    """Layer ``0`` copies the red and green input channels; then pooling and a linear head."""
    conv = nn.Conv2d(3, 2, 1, bias=False)
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[0, 0] = conv.weight[1, 1] = 1.0
    linear = nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        linear.weight.copy_(torch.tensor(head or [[2.0, -1.0], [0.5, 3.0]]))
    return nn.Sequential(conv, nn.AdaptiveAvgPool2d(1), nn.Flatten(), linear).eval()


def probe() -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Four 20×20 images: a red square of graded values (1…25) at a place of its own in each; the
    green channel is empty."""
    images = torch.zeros(4, 3, 20, 20)
    red = torch.zeros(4, 20, 20, dtype=torch.bool)
    for i in range(4):
        images[i, 0, 3 * i:3 * i + 5, 2 * i:2 * i + 5] = torch.arange(1.0, 26.0).view(5, 5)
        red[i, 3 * i:3 * i + 5, 2 * i:2 * i + 5] = True
    return images, {"red": red, "elsewhere": ~red}


def test_dissection_iou_in_closed_form():
    images, concepts = probe()
    dissection = dissect(two_channel_model(), "0", images, concepts, quantile=0.97)
    threshold = torch.quantile(images[:, 0].flatten(), 0.97)
    fired = int((images[:, 0] > threshold).sum())           # all inside the squares
    assert dissection.thresholds[0] == pytest.approx(float(threshold))
    assert dissection.iou[0, 0] == pytest.approx(fired / 100)  # |fired ∩ red| / |red|
    assert dissection.iou[0, 1] == 0
    assert dissection.name(0) == ("red", pytest.approx(fired / 100))
    assert dissection.iou[1].tolist() == [0.0, 0.0]          # green never exceeds its threshold 0
    assert dissection.names() == ["red", "none"]
    # channels at random: half are named "red", none "elsewhere"
    assert chance_agreement(dissection, ["red", "elsewhere"]) == pytest.approx(0.25)
    with pytest.raises(ValueError, match="concept masks must be"):
        dissect(two_channel_model(), "0", images, {"red": concepts["red"][:2]})
    with pytest.raises(ValueError, match="quantile must be in"):
        dissect(two_channel_model(), "0", images, concepts, quantile=1.0)
    with pytest.raises(ValueError, match="not a spatial"):
        dissect(two_channel_model(), "2", images, concepts)


def test_the_sentence_lists_the_channels_of_positive_weight_largest_first():
    """Grad-CAM's weights on a pooled linear head are the head's row over h·w: class 0 (2, −1) is
    channel 0 alone; class 1 (0.5, 3) is channel 1, then channel 0."""
    images, concepts = probe()
    model = two_channel_model()
    dissection = dissect(model, "0", images, concepts, quantile=0.97)
    explanation = camlens.explain(model, images[:1], "0", ("gradcam", "layercam"), Classes([0, 1]))
    first = neuron_text(explanation, 0, dissection, ("a", "b"))
    assert [c for c, *_ in first.channels] == [0]
    assert first.channels[0][1] == pytest.approx(2 / 400)
    assert first.sentence == f"the evidence for 'a' comes from channels 0 (red, IoU {dissection.name(0)[1]:.2f})"
    second = neuron_text(explanation, 1, dissection, ("a", "b"))
    assert [c for c, *_ in second.channels] == [1, 0]
    # channel 1 fires nowhere: every IoU 0, below the detector cut, so it names no concept
    assert second.channels[0][2:] == ("none", 0.0)
    assert concept_agreement([first, second], ["red", "elsewhere"]) == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match="layercam has no channel weights"):
        neuron_text(explanation, 0, dissection, ("a", "b"), method="layercam")
    nothing = camlens.explain(two_channel_model([[-1.0, -1.0], [1.0, 1.0]]), images[:1], "0", "gradcam", 0)
    assert "no channel has a positive weight" in neuron_text(nothing, 0, dissection, ("a", "b")).sentence


def test_on_scenes_the_top_channels_name_the_class_they_explain():
    """Measured on 100 held-out scenes with a probe of 300: 0.65 of the top-5 channels' concepts are
    the explained label (shapes 0.8–1.0, colours 0.4), where a channel drawn at random would be 0.13
    (its label's share of the 64 channels' names, on average)."""
    model = camlens.load("scenes-classifier")
    probe_scenes = scenes(300, seed=7)
    dissection = dissect(model.model, model.layer, scene_tensors(probe_scenes), scene_concepts(probe_scenes))
    texts, explained = scene_texts(model, dissection, scenes(40, seed=2026))
    chance = chance_agreement(dissection, explained)
    agreement = concept_agreement(texts, explained)
    assert agreement >= 0.5 and agreement >= 3 * chance
    shapes = [t for t, label in zip(texts, explained) if label in ("circle", "square", "triangle", "star")]
    assert concept_agreement(shapes, [e for e in explained if e in ("circle", "square", "triangle", "star")]) >= 0.75


def test_the_command_prints_a_sentence_per_image(tmp_path, capsys):
    scene = scenes(1, seed=2026, objects=2)[0]
    scene.pil().save(tmp_path / "scene.png")
    out = tmp_path / "out"
    assert main(["neurons", str(tmp_path / "scene.png"), "--model", "scenes-classifier", "--target", "circle",
                 "--probe-count", "100", "--out", str(out)]) == 0
    assert "scene.png: the evidence for 'circle' comes from channels" in capsys.readouterr().out
    rows = json.loads((out / "neurons.json").read_text())["rows"]
    assert [row["rank"] for row in rows] == list(range(1, len(rows) + 1)) and rows[0]["class"] == "circle"
    assert main(["neurons", str(tmp_path / "scene.png"), "--model", "scenes-classifier", "--method", "layercam",
                 "--probe-count", "50", "--out", str(out)]) == 2
    assert "layercam has no channel weights" in capsys.readouterr().err
    assert main(["neurons", str(tmp_path / "scene.png"), "--probe", str(tmp_path / "none.csv"), "--out", str(out)]) == 2
    assert "--probe:" in capsys.readouterr().err


def test_concepts_from_a_segmented_dataset_name_the_channels(tmp_path):
    """Masks of class indices (1 = red thing, 2 = green thing) read through a dataset CSV as
    concepts: the copying layer's red channel is named by concept 1, its green one by concept 2."""
    import numpy as np
    from PIL import Image

    from camlens.data import Preprocessing, load_dataset
    from camlens.evaluate.concepts import mask_concepts

    rows = ["file,class_index,mask"]
    for i in range(3):
        pixels, labels = np.zeros((16, 16, 3), np.uint8), np.zeros((16, 16), np.uint8)
        pixels[2 + i:7 + i, 2:7, 0] = np.arange(100, 125).reshape(5, 5)
        pixels[9:14, 8 + i:13 + i, 1] = np.arange(100, 125).reshape(5, 5)
        labels[2 + i:7 + i, 2:7], labels[9:14, 8 + i:13 + i] = 1, 2
        Image.fromarray(pixels).save(tmp_path / f"{i}.png")
        Image.fromarray(labels).save(tmp_path / f"{i}-mask.png")
        rows.append(f"{i}.png,0,{i}-mask.png")
    (tmp_path / "probe.csv").write_text("\n".join(rows) + "\n")
    samples = load_dataset(tmp_path / "probe.csv")
    preprocessing = Preprocessing(resize=16, crop=16, mean=(0.0,) * 3, std=(1.0,) * 3)
    concepts = mask_concepts(samples, preprocessing, {1: "red thing", 2: "green thing"})
    assert int(concepts["red thing"].sum()) == int(concepts["green thing"].sum()) == 3 * 25
    images = torch.stack([preprocessing(Image.open(s.path)) for s in samples])
    dissection = dissect(two_channel_model(), "0", images, concepts, quantile=0.9)
    assert dissection.name(0)[0] == "red thing" and dissection.name(1)[0] == "green thing"
    with pytest.raises(ValueError, match="have no mask"):
        mask_concepts([type(samples[0])(samples[0].path, 0)], preprocessing, {1: "x"})


def test_a_token_layer_is_dissected_as_explain_lays_it_out():
    """The scene ViT's last block's norm (8×8 patch tokens of width 96 after a class token): its
    96 features are dissected as the (96, 8, 8) maps explain() explains there, the same threshold
    as a quantile of those maps."""
    model = camlens.load("scenes-vit")
    probe_scenes = scenes(12, seed=7)
    images = scene_tensors(probe_scenes)
    dissection = dissect(model.model, model.layer, images, scene_concepts(probe_scenes), quantile=0.9)
    maps = camlens.explain(model.model, images, model.layer, "gradcam", 0).activations
    assert maps.shape[1:] == (96, 8, 8) and dissection.iou.shape == (96, len(scene_concepts(probe_scenes)))
    expected = torch.quantile(maps.transpose(0, 1).flatten(1).float(), 0.9, dim=1)
    torch.testing.assert_close(dissection.thresholds.float(), expected, rtol=1e-4, atol=1e-5)
