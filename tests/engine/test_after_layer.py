"""The network after a layer: it must compute exactly what the full model computes when the layer's
output is replaced, on architectures with skip connections, reused modules and dict outputs."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

from camlens.engine.after import AfterLayer
from camlens.engine.capture import record_forward

from support import random_images


def replaced_forward(model, images, layer, new_output, call=-1):
    """Independent path: the full model with the layer's output replaced by a plain hook."""
    module = model.get_submodule(layer)
    outputs = []
    module.register_forward_hook(lambda m, i, o: outputs.append(o))
    with torch.no_grad():
        model(images[:1])
    calls = len(outputs)
    module._forward_hooks.clear()
    seen = [0]

    def hook(m, i, o):
        seen[0] += 1
        return new_output if seen[0] - 1 == call % calls else None

    handle = module.register_forward_hook(hook)
    try:
        with torch.no_grad():
            return model(images.expand(new_output.shape[0], *images.shape[1:]))
    finally:
        handle.remove()


def check_after(model, images, layer, call=-1, expect_sliced=True):
    model.eval()
    forward = record_forward(model, images, {layer: model.get_submodule(layer)})
    activations = forward.activations(layer, call).detach()
    output = forward.output.detach() if isinstance(forward.output, torch.Tensor) else forward.output["logits"].detach()
    selector = None if isinstance(forward.output, torch.Tensor) else "logits"
    with warnings.catch_warnings():
        warnings.simplefilter("error" if expect_sliced else "ignore")
        after = AfterLayer(model, images, layer, activations, output, call=call, calls=len(forward.calls[layer]),
                           output_selector=selector, batch_size=3)
    assert after.is_sliced == expect_sliced, after.fallback_reason
    generator = torch.Generator().manual_seed(0)
    # six perturbed versions of image 0: channels dropped at random and noise added
    variants = activations[:1].repeat(6, 1, 1, 1)
    variants = variants * (torch.rand(variants.shape[:2], generator=generator) > 0.3)[:, :, None, None]
    variants = variants + 0.1 * torch.randn(variants.shape, generator=generator)
    with torch.no_grad():
        got = after(variants, torch.zeros(6, dtype=torch.long))
    expected = replaced_forward(model, images[:1], layer, variants, call)
    expected = expected if isinstance(expected, torch.Tensor) else expected["logits"]
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)
    assert not torch.allclose(got[0], output[0], atol=1e-3)  # the perturbation changed the output
    return after


@pytest.fixture(scope="module")
def torchvision():
    return pytest.importorskip("torchvision")


def test_resnet50_mid_block_layer_with_the_skip_connection_joining_after(torchvision):
    torch.manual_seed(0)
    model = torchvision.models.resnet50()
    after = check_after(model, random_images(2, 96), "layer4.1.conv2")
    assert len(after._frontier) == 1  # the block input, waiting for the residual addition


def test_resnet50_reused_relu_module_first_call(torchvision):
    torch.manual_seed(0)
    check_after(torchvision.models.resnet50(), random_images(2, 96), "layer4.2.relu", call=0)


def test_vgg16_relu5_3(torchvision):
    torch.manual_seed(0)
    check_after(torchvision.models.vgg16(), random_images(1, 224), "features.29")


def test_efficientnet_lite0_mid_block(lite0, lite0_batch):
    check_after(lite0[0], lite0_batch[:2], "_blocks.10._depthwise_conv")


def test_mobilenet_v2_real_weights(mobilenet, imagenet_photos):
    model, preprocess = mobilenet
    check_after(model, torch.stack([preprocess(image) for image in imagenet_photos[:2]]), "features.14.conv.1")


class DictModel(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.stem = nn.Conv2d(3, 8, 3)
        self.body = nn.Conv2d(8, 8, 3)
        self.fc = nn.Linear(8, 5)

    def forward(self, x):
        stem = self.stem(x).relu()
        features = self.body(stem).relu() + stem[:, :, 1:-1, 1:-1]  # a branch from before the layer joins after
        return {"logits": self.fc(features.mean(dim=(2, 3))), "stem_energy": stem.mean()}


def test_dict_outputs_and_a_branch_from_before_the_layer():
    check_after(DictModel(), random_images(2, 16), "body")


class DataDependent(nn.Module):
    """Python control flow on tensor values: torch.fx cannot trace it."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 6, 3)
        self.fc = nn.Linear(6, 4)

    def forward(self, x):
        features = self.conv(x).relu()
        if features.sum() > 0:
            features = features * 2
        return self.fc(features.mean(dim=(2, 3)))


def test_untraceable_model_falls_back_to_full_forwards_with_a_warning():
    images = random_images(2, 12)
    model = DataDependent().eval()
    forward = record_forward(model, images, {"conv": model.conv})
    with pytest.warns(RuntimeWarning, match=r"cannot evaluate the part of DataDependent after 'conv' on its own \(torch.fx could not trace"):
        AfterLayer(model, images, "conv", forward.activations("conv").detach(), forward.output.detach(), calls=1)
    check_after(model, images, "conv", expect_sliced=False)


def check_zeroing(model, images, layer, expect_head):
    """Zeroing single maps (Ablation-CAM's evaluations) equals the full model with that map zeroed,
    whether or not the low-rank path of camlens.channelwise is taken."""
    model.eval()
    forward = record_forward(model, images, {layer: model.get_submodule(layer)})
    activations = forward.activations(layer, -1).detach()
    after = AfterLayer(model, images, layer, activations, forward.output.detach(), batch_size=4)
    assert after.has_linear_head == expect_head
    channels = activations.shape[1]
    rows = torch.tensor([0, 0, 0, 1, 1, 0, 1])[: 2 * min(images.shape[0], 2) + 3] % images.shape[0]
    picked = torch.randint(channels, rows.shape, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        got = after.zeroing_channels(activations, torch.arange(images.shape[0]), rows, picked)
    expected = []
    for row, channel in zip(rows.tolist(), picked.tolist()):
        variant = activations[row:row + 1].clone()
        variant[:, channel] = 0
        expected.append(replaced_forward(model, images[row:row + 1], layer, variant))
    torch.testing.assert_close(got, torch.cat(expected), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name,layer,expect_head", [
    ("vgg16", "features.29", True),          # max-pool, average-pool, flatten, classifier.0 in a Sequential
    ("resnet50", "layer4", True),            # average-pool, flatten, fc
    ("resnet50", "layer4.1", False),         # a residual block follows: no shortcut
    # an inverted residual's expansion: BN, ReLU6, depthwise conv, BN, ReLU6, then a pointwise conv
    ("mobilenet_v2", "features.17.conv.0", True),
    ("mobilenet_v2", "features.16.conv.0", True),   # the same; the block's residual join follows the 1×1 conv
])
def test_zeroing_single_maps_on_torchvision(torchvision, name, layer, expect_head):
    torch.manual_seed(0)
    check_zeroing(getattr(torchvision.models, name)(), random_images(2, 96), layer, expect_head)


def test_zeroing_single_maps_on_efficientnet_lite0(lite0, lite0_batch):
    check_zeroing(lite0[0], lite0_batch[:2], "_head_act", True)  # average-pool, .flatten(1), dropout, fc


def test_zeroing_single_maps_through_batch_norm_whose_zero_is_not_zero():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 6, 3), nn.ReLU(), nn.BatchNorm2d(6), nn.MaxPool2d(2), nn.SiLU(), nn.Flatten(), nn.Dropout(0.5),
        nn.Linear(6 * 5 * 5, 7), nn.ReLU(), nn.Linear(7, 3),
    )
    model[2].running_mean.uniform_(-1, 1)
    model[2].bias.data.uniform_(0.5, 1)  # BN(0) ≠ 0: the zeroed channel's own value matters
    check_zeroing(model, random_images(2, 12), "1", True)


def test_zeroing_single_maps_through_tf_same_padded_depthwise_convolutions():
    from camlens.models.mobilenet import MobileNetV2  # the zoo's port of TF's MobileNetV2 (SamePadConv2d)

    torch.manual_seed(0)
    check_zeroing(MobileNetV2(), random_images(2, 96), "features.17.conv.0", True)
