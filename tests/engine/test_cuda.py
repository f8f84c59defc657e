"""On a CUDA device every method gives the CPU's maps (TF32 off, float32 tolerance), and a
multi-input scene model explains there too. Skipped where there is no CUDA device."""

from __future__ import annotations

import pytest
import torch
from torchvision.models import resnet18

import camlens
from camlens.methods import METHODS

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.fixture(scope="module")
def no_tf32():
    matmul, cudnn = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = matmul, cudnn


def _model_for(method: str) -> tuple[torch.nn.Module, str]:
    """A ResNet-18 at its last block; a small ViT for the methods that read attention."""
    torch.manual_seed(0)
    if METHODS[method].kind == "attention":
        timm = pytest.importorskip("timm")
        return timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=64, depth=2, num_classes=10).eval(), "auto"
    return resnet18(num_classes=10).eval(), "layer4"


@pytest.mark.parametrize("method", sorted(METHODS))
def test_every_method_gives_the_cpu_maps_on_cuda(method, no_tf32):
    model, layer = _model_for(method)
    images = torch.randn(2, 3, 64, 64)
    on_cpu = camlens.explain(model, images, layer=layer, methods=[method], target="top2")
    on_cuda = camlens.explain(model.cuda(), images.cuda(), layer=layer, methods=[method], target="top2")
    assert on_cuda.maps[method].device.type == "cuda"
    # float32 against float64 on the CPU differs by at most 4e-4 of the maps' scale (Ablation-CAM's
    # score differences); CUDA's own kernels add as much again
    scale = float(on_cpu.maps[method].abs().max())
    torch.testing.assert_close(on_cuda.maps[method].cpu(), on_cpu.maps[method], rtol=1e-3, atol=1e-3 * scale)


@pytest.mark.parametrize("method", ["gradcam", "layercam", "ablationcam"])
def test_token_layers_give_the_cpu_maps_on_cuda(method, no_tf32):
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    model = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=64, depth=2, num_classes=10).eval()
    images = torch.randn(2, 3, 64, 64)
    on_cpu = camlens.explain(model, images, methods=[method], target="top2")
    on_cuda = camlens.explain(model.cuda(), images.cuda(), methods=[method], target="top2")
    assert on_cuda.layer == on_cpu.layer == "blocks.1.norm1"
    scale = float(on_cpu.maps[method].abs().max())
    torch.testing.assert_close(on_cuda.maps[method].cpu(), on_cpu.maps[method], rtol=1e-3, atol=1e-3 * scale)


def test_a_multi_input_scene_model_explains_on_cuda(no_tf32):
    from camlens.data.scenes import scene_tensors, scenes
    from camlens.models.scenes import LAYER, SceneVQA, question_tokens

    torch.manual_seed(0)
    model = SceneVQA().eval()
    inputs = (scene_tensors(scenes(2, seed=1)), question_tokens(["what colour is the circle ?"] * 2))
    on_cpu = camlens.explain(model, inputs, layer=LAYER, methods=["gradcam", "liftcam", "scorecam"])
    on_cuda = camlens.explain(model.cuda(), tuple(t.cuda() for t in inputs), layer=LAYER,
                              methods=["gradcam", "liftcam", "scorecam"])
    for method, saliency in on_cpu.maps.items():
        scale = float(saliency.abs().max())
        torch.testing.assert_close(on_cuda.maps[method].cpu(), saliency, rtol=1e-3, atol=1e-3 * scale)


def test_evaluate_on_cuda_gives_the_cpu_s_records(tmp_path, no_tf32):
    from camlens.cli import main
    from camlens.evaluate import read_results
    from support import photo_dataset

    dataset = photo_dataset(tmp_path)
    common = ["--methods", "gradcam,liftcam", "--metrics", "faithfulness,axioms,localization", "--steps", "4"]
    for device in ("cpu", "cuda"):
        assert main(["evaluate", str(dataset), "--out", str(tmp_path / device), "--device", device, *common]) == 0
    on_cpu, on_cuda = (sorted(read_results(tmp_path / d / "results.jsonl"), key=lambda r: (r["id"], r["method"]))
                       for d in ("cpu", "cuda"))
    assert len(on_cpu) == len(on_cuda) == 6
    for a, b in zip(on_cpu, on_cuda):
        assert a["predicted"] == b["predicted"]
        for key in ("average_drop", "deletion_auc", "insertion_auc", "conservation_error", "energy_pointing_game"):
            assert b[key] == pytest.approx(a[key], rel=1e-3, abs=1e-4), key


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_autocast_maps_are_float32_and_close_to_float32_maps_on_cuda(dtype, no_tf32):
    torch.manual_seed(0)
    model = resnet18(num_classes=10).eval().cuda()
    images = torch.randn(2, 3, 64, 64, device="cuda")
    full = camlens.explain(model, images, layer="layer4", methods=["gradcam", "layercam"])
    low = camlens.explain(model, images, layer="layer4", methods=["gradcam", "layercam"], autocast=dtype)
    for method, saliency in full.maps.items():
        assert low.maps[method].dtype == torch.float32
        a, b = camlens.normalize(saliency).flatten(1), camlens.normalize(low.maps[method]).flatten(1)
        assert torch.nn.functional.cosine_similarity(a, b).min() > 0.98, method
