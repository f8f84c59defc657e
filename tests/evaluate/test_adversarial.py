"""The adversarial-noise diagnostic: the attack's closed form on a linear model, its bounds, the
model left as it was, and the diagnostic and its command on real boxed ImageNet photos."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

from camlens.cli import main
from camlens.evaluate.adversarial import pgd, robustness, robustness_summary

MEAN, STD = (0.5, 0.4, 0.3), (0.2, 0.25, 0.5)


def linear_model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 5))


def normalized(pixels: torch.Tensor) -> torch.Tensor:
    return (pixels - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)


def test_one_step_is_fgsm_in_closed_form_on_a_linear_model():
    """For logits z = W (x − μ)/σ + b, ∂CE/∂x = Wᵀ(p − e_y)/σ: FGSM moves every pixel by ε along its sign."""
    model = linear_model()
    pixels = torch.rand(2, 3, 4, 4, generator=torch.Generator().manual_seed(1)) * 0.5 + 0.25  # ε keeps them in [0, 1]
    labels = torch.tensor([1, 3])
    epsilon = 0.05
    attacked = pgd(model, normalized(pixels), labels, epsilon, MEAN, STD, steps=1, step_size=epsilon)
    weight = model[1].weight.detach()
    with torch.no_grad():
        p = model(normalized(pixels)).softmax(dim=1)
    gradient = ((p - nn.functional.one_hot(labels, 5)) @ weight).view(2, 3, 4, 4) / torch.tensor(STD).view(1, 3, 1, 1)
    torch.testing.assert_close(attacked, normalized(pixels + epsilon * gradient.sign()), atol=1e-5, rtol=0)
    # targeted: toward the class, down the gradient of its loss
    toward = pgd(model, normalized(pixels), labels, epsilon, MEAN, STD, steps=1, step_size=epsilon, targeted=True)
    torch.testing.assert_close(toward, normalized(pixels - epsilon * gradient.sign()), atol=1e-5, rtol=0)


def test_the_attack_stays_in_its_ball_and_the_pixel_range_and_raises_the_loss():
    model = linear_model()
    pixels = torch.rand(4, 3, 4, 4, generator=torch.Generator().manual_seed(2))
    labels = torch.tensor([0, 1, 2, 3])
    images = normalized(pixels)
    before = nn.functional.cross_entropy(model(images), labels)
    for epsilon in (1 / 255, 8 / 255):
        attacked = pgd(model, images, labels, epsilon, MEAN, STD, steps=5)
        back = attacked * torch.tensor(STD).view(1, 3, 1, 1) + torch.tensor(MEAN).view(1, 3, 1, 1)
        assert (back - pixels).abs().max() <= epsilon + 1e-6 and back.min() >= -1e-6 and back.max() <= 1 + 1e-6
        with torch.no_grad():
            assert nn.functional.cross_entropy(model(attacked), labels) > before
    with pytest.raises(ValueError, match="epsilon must be ≥ 0 and steps ≥ 1"):
        pgd(model, images, labels, 0.1, MEAN, STD, steps=0)


def test_the_model_is_left_as_it_was():
    model = nn.Sequential(nn.Flatten(), nn.Dropout(0.5), nn.Linear(48, 5)).train()
    images = torch.randn(2, 3, 4, 4)
    first = pgd(model, images, torch.tensor([0, 1]), 0.03, MEAN, STD, steps=3)
    assert model.training and model[1].training  # its modes
    assert all(p.grad is None for p in model.parameters())  # only the input was differentiated
    assert torch.equal(first, pgd(model, images, torch.tensor([0, 1]), 0.03, MEAN, STD, steps=3))  # eval: no dropout


def test_the_summary_also_averages_over_the_successful_attacks_alone():
    def record(i, success, pointing, correlation):
        return {"id": str(i), "label": 0, "epsilon": 4, "method": "gradcam", "attack_success": success,
                "adversarial_class": 1, "adversarial_confidence": 0.9, "original_confidence": 0.1,
                "pointing_clean": 1.0, "pointing_adversarial": pointing, "energy_clean": 0.5,
                "energy_adversarial": 0.5, "map_correlation": correlation}

    rows = robustness_summary([record(0, True, 0.0, 0.2), record(1, False, 1.0, 1.0), record(2, True, 1.0, math.nan)])
    row = rows[0]
    assert (row["images"], row["successes"], row["attack_success"]) == (3, 2, pytest.approx(2 / 3))
    assert row["pointing_adversarial"] == pytest.approx(2 / 3) and row["pointing_adversarial_succeeded"] == 0.5
    assert row["map_correlation"] == pytest.approx(0.6) and row["map_correlation_succeeded"] == pytest.approx(0.2)


@pytest.fixture(scope="module")
def boxed(shared_data):
    from camlens.data import load_dataset

    return load_dataset(shared_data("imagenet_val_bbox/annotations.csv"))


@pytest.mark.slow
def test_the_diagnostic_on_boxed_photos_attacks_measures_and_resumes(boxed, tmp_path):
    import camlens

    model = camlens.load("efficientnet-lite0")
    samples, methods = boxed[:4], ("gradcam", "layercam")
    records = robustness(model, samples, methods, tmp_path, epsilons=(1, 8), progress=False)
    assert len(records) == 4 * 2 * 2
    strong = [r for r in records if r["epsilon"] == 8]
    assert all(r["attack_success"] and r["adversarial_class"] != r["label"] for r in strong)
    assert all(r["original_confidence"] < 0.01 for r in strong)
    for record in records:
        assert 0 <= record["energy_clean"] <= 1 and 0 <= record["energy_adversarial"] <= 1
    # the clean map is the same whatever ε: measured once
    for method in methods:
        clean = {(r["id"], r["epsilon"]): r["energy_clean"] for r in records if r["method"] == method}
        assert all(clean[(i, 1)] == clean[(i, 8)] for i, _ in clean)
    summary = {(row["epsilon"], row["method"]): row for row in robustness_summary(records)}
    # LayerCAM's map of the original class stays closer to its clean map than Grad-CAM's (measured: 0.80 vs −0.20)
    assert summary[8, "layercam"]["map_correlation"] > summary[8, "gradcam"]["map_correlation"] + 0.3
    assert robustness(model, samples, methods, tmp_path, epsilons=(1, 8), progress=False) == records  # resumed: no work
    with pytest.raises(ValueError, match="no label or no box"):
        robustness(model, [type(samples[0])(samples[0].path, 3)], methods, tmp_path / "x")


def test_the_command_writes_its_table_and_refuses_what_it_cannot_use(shared_data, tmp_path, capsys):
    dataset = str(shared_data("imagenet_val_bbox/annotations.csv"))
    out = tmp_path / "out"
    assert main(["robustness", dataset, "--limit", "2", "--epsilons", "4", "--methods", "gradcam",
                 "--examples", "1", "--out", str(out)]) == 0
    rows = json.loads((out / "summary.json").read_text())["rows"]
    assert [(r["epsilon"], r["method"], r["images"]) for r in rows] == [(4, "gradcam", 2)]
    assert (out / "examples.jpg").is_file() and (out / "summary.csv").is_file()
    assert "| 4 | gradcam |" in capsys.readouterr().out
    assert main(["robustness", dataset, "--epsilons", "0,x", "--out", str(out)]) == 2
    assert "--epsilons '0,x'" in capsys.readouterr().err
    labels = tmp_path / "labels.csv"  # labels without boxes: nothing to localize
    labels.write_text(f"file,class_index\n{shared_data('imagenet_val_bbox/images/ILSVRC2012_val_00000001.JPEG')},65\n")
    assert main(["robustness", str(labels), "--epsilons", "4", "--out", str(tmp_path / "o2")]) == 2
    assert "no label or no box" in capsys.readouterr().err


def test_a_multilabel_attack_takes_away_one_label_by_its_binary_loss():
    """For a sigmoid model the untargeted step follows ∂(−log σ(z_y))/∂x = −(1 − σ(z_y)) w_y/σ: FGSM
    moves every pixel by ε against the sign of the label's weights, whatever the other labels do."""
    model = linear_model()
    pixels = torch.rand(2, 3, 4, 4, generator=torch.Generator().manual_seed(3)) * 0.5 + 0.25
    labels, epsilon = torch.tensor([2, 4]), 0.05
    attacked = pgd(model, normalized(pixels), labels, epsilon, MEAN, STD, steps=1, step_size=epsilon, multilabel=True)
    weight = model[1].weight.detach()[labels].view(2, 3, 4, 4) / torch.tensor(STD).view(1, 3, 1, 1)
    torch.testing.assert_close(attacked, normalized(pixels - epsilon * weight.sign()), atol=1e-5, rtol=0)


@pytest.mark.slow
def test_on_held_out_scenes_the_attack_removes_a_label_and_the_maps_still_point(tmp_path):
    """The diagnostic on a multi-label scene classifier, through a boxed dataset written from scenes.
    Measured on 200 held-out scenes at ε = 8/255: the label is gone from 0.99 of them, and every
    method's map of it still points at its object (0.96–0.99)."""
    import camlens
    from camlens.data import load_dataset
    from camlens.data.scenes import LABELS, scenes, write_dataset

    batch = scenes(12, seed=2026)
    samples = load_dataset(write_dataset(batch, tmp_path / "scenes"))
    assert [LABELS[s.label] for s in samples] == [scene.objects[0].shape for scene in batch]
    assert [len(s.boxes) for s in samples] == [1] * 12  # one object per shape in a scene
    assert samples[0].boxes[0] == (samples[0].label, batch[0].objects[0].box)
    records = robustness(camlens.load("scenes-classifier"), samples, ("gradcam", "layercam"), tmp_path / "out",
                         epsilons=(8,), progress=False)
    summary = {row["method"]: row for row in robustness_summary(records)}
    assert all(r["original_confidence"] < 0.5 for r in records if r["attack_success"])
    for method in ("gradcam", "layercam"):
        assert summary[method]["attack_success"] >= 0.9
        assert summary[method]["pointing_clean"] >= 0.9 and summary[method]["pointing_adversarial"] >= 0.8
