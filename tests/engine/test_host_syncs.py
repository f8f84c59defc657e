"""The gradient methods never make the device wait for the host: with a class, top-k or region
target, ``explain()`` reads nothing back from the device except its one optional finite check.

Counted on the CPU, where every read-back still goes through the same operators: a
``TorchDispatchMode`` sees ``aten._local_scalar_dense`` (``.item()``, ``bool()``, ``int()``,
``float()`` of a tensor) and ``aten.nonzero`` (a data-dependent shape: a synchronization on a GPU),
and ``Tensor.tolist``, ``Tensor.numpy`` and ``Tensor.cpu``, which the dispatcher does not see on the
CPU, are counted where they are called."""

from __future__ import annotations

import collections
import traceback

import pytest
import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torchvision.models import resnet18

import camlens
from camlens.targets import SegmentationRegion

GRADIENT_METHODS = ("gradcam", "gradcampp", "xgradcam", "layercam", "hirescam", "guided_backprop", "guided_gradcam")
_READ_BACK = {torch.ops.aten._local_scalar_dense.default, torch.ops.aten.nonzero.default,
              torch.ops.aten.is_nonzero.default}


class ReadBacks(TorchDispatchMode):
    """Counts the read-backs from the device while active, each with the camlens line that made it."""

    def __init__(self):
        super().__init__()
        self.seen: collections.Counter[str] = collections.Counter()

    def note(self, what: str) -> None:
        inside = [frame for frame in traceback.extract_stack() if "/camlens/" in frame.filename]
        where = f"{inside[-1].filename.rsplit('/camlens/', 1)[-1]}:{inside[-1].lineno}" if inside else "outside camlens"
        self.seen[f"{what} at {where}"] += 1

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func in _READ_BACK:
            self.note(str(func))
        return func(*args, **(kwargs or {}))


@pytest.fixture
def read_backs(monkeypatch):
    counter = ReadBacks()
    for name in ("tolist", "numpy", "cpu"):
        original = getattr(torch.Tensor, name)

        def counted(self, *args, _original=original, _name=name, **kwargs):
            counter.note(f"Tensor.{_name}")
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counted)
    return counter


class DenseHead(nn.Module):
    """A small segmentation-style model: (B, 3, H, W) → (B, 4, H/2, W/2) class maps."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.ReLU(), nn.Conv2d(8, 8, 3, 1, 1), nn.ReLU())
        self.classifier = nn.Conv2d(8, 4, 1)

    def forward(self, x):
        return self.classifier(self.features(x))


@pytest.mark.parametrize("target", [None, "top3", 4, [1, 7]], ids=["top1", "top3", "one class", "a class per image"])
@pytest.mark.parametrize("check_finite, allowed", [(True, 1), (False, 0)], ids=["checked", "unchecked"])
def test_gradient_methods_with_class_targets_read_nothing_back(read_backs, target, check_finite, allowed):
    torch.manual_seed(0)
    model = resnet18(num_classes=10).eval()
    images = torch.randn(2, 3, 64, 64)
    with read_backs:
        camlens.explain(model, images, layer="layer4", methods=GRADIENT_METHODS, target=target, check_finite=check_finite)
    assert sum(read_backs.seen.values()) == allowed, dict(read_backs.seen)


@pytest.mark.parametrize("check_finite, allowed", [(True, 1), (False, 0)], ids=["checked", "unchecked"])
def test_a_region_target_reads_nothing_back_either(read_backs, check_finite, allowed):
    torch.manual_seed(0)
    model = DenseHead().eval()
    images = torch.randn(2, 3, 32, 32)
    mask = torch.zeros(16, 16, dtype=torch.bool)
    mask[4:10, 3:12] = True
    with read_backs:
        camlens.explain(model, images, layer="features.2", methods=GRADIENT_METHODS,
                        target=SegmentationRegion(2, mask), check_finite=check_finite)
    assert sum(read_backs.seen.values()) == allowed, dict(read_backs.seen)


def test_the_check_still_names_non_finite_images_and_scores():
    model = resnet18(num_classes=10).eval()
    images = torch.randn(3, 3, 64, 64)
    images[1, 0, 5, 5] = float("nan")
    with pytest.raises(ValueError, match=r"batch indices \[1\]"):
        camlens.explain(model, images, layer="layer4")
    huge = torch.full((1, 3, 64, 64), 3e38)
    with pytest.raises(ValueError, match="target scores are NaN or infinite"):
        camlens.explain(model, huge, layer="layer4")
