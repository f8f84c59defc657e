"""Devices: ``--device auto|cpu|cuda|cuda:N`` on every command that runs a model, and models
wrapped for data parallelism. The CPU half runs everywhere; tests/engine/test_cuda.py has the GPU's."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torchvision.models import resnet18

import camlens
from camlens.cli import main
from camlens.cli.common import UsageError, parse_device


def test_auto_is_cuda_when_there_is_one_else_the_cpu():
    assert parse_device("auto") == torch.device("cuda" if torch.cuda.is_available() else "cpu")
    assert parse_device("cpu") == torch.device("cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal where there is no CUDA device")
@pytest.mark.parametrize("text", ["cuda", "cuda:0", "cuda:3"])
def test_cuda_without_a_cuda_device_is_a_usage_error(text):
    with pytest.raises(UsageError, match="sees no CUDA device"):
        parse_device(text)


def test_an_unknown_device_names_the_choices():
    with pytest.raises(UsageError, match="use auto, cpu, cuda or cuda:N"):
        parse_device("gpu")


@pytest.mark.parametrize("command", ["explain", "evaluate"])
def test_both_commands_take_device_and_default_to_auto(command, capsys):
    with pytest.raises(SystemExit):
        main([command, "--help"])
    assert "auto (CUDA when there is one, else the CPU)" in capsys.readouterr().out


def test_a_data_parallel_model_is_explained_through_its_module_with_a_note():
    torch.manual_seed(0)
    model = resnet18(num_classes=10).eval()
    images = torch.randn(2, 3, 64, 64)
    plain = camlens.explain(model, images, layer="layer4", methods=["gradcam"])
    wrapped = nn.DataParallel(model)  # on a machine with one GPU, this moves the model to it
    with pytest.warns(UserWarning, match=r"inside DataParallel \(model.module\)"):
        through = camlens.explain(wrapped, images, layer="module.layer4", methods=["gradcam"])  # inputs on the CPU
    assert through.maps["gradcam"].device == next(model.parameters()).device
    scale = float(plain.maps["gradcam"].abs().max())  # a GPU may compute in TF32
    torch.testing.assert_close(through.maps["gradcam"].cpu(), plain.maps["gradcam"], rtol=1e-2, atol=1e-2 * scale)
    assert through.layer == "layer4" and isinstance(wrapped.module, type(model))
