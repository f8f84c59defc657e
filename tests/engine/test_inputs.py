"""Models with several inputs: which input is the image, rows of every input taken together, every
method on such a model (the network after the layer sliced or not), and what is refused."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import camlens
from camlens.engine.after import AfterLayer
from camlens.engine.inputs import Inputs, as_inputs

METHODS = ("gradcam", "gradcampp", "xgradcam", "layercam", "hirescam", "ablationcam", "scorecam", "liftcam",
           "shapley", "guided_gradcam")


class ImageAndQuestion(nn.Module):
    """A question (token ids) steers an attention over the image's feature map, and joins the answer."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 6, 3, padding=1)
        self.relu = nn.ReLU()
        self.keys = nn.Conv2d(6, 6, 1)
        self.embed = nn.Embedding(7, 6)
        self.fc = nn.Linear(12, 5)
        self.calls: list[torch.Tensor] = []  # the questions each forward received

    def forward(self, images, question, *, scale: float = 1.0):
        self.calls.append(question.detach().clone())
        features = self.relu(self.conv(images))
        query = self.embed(question).mean(dim=1)
        logits = (self.keys(features) * query[:, :, None, None]).sum(dim=1)
        attention = logits.flatten(1).softmax(dim=1).view_as(logits)
        context = (features * attention[:, None]).sum(dim=(2, 3))
        return self.fc(torch.cat([context, query], dim=1)) * scale


@pytest.fixture
def batch():
    generator = torch.Generator().manual_seed(1)
    return torch.rand(3, 3, 8, 8, generator=generator), torch.tensor([[1, 2, 3], [4, 5, 6], [2, 2, 0]])


def test_the_image_is_the_only_4d_float_input_or_named(batch):
    images, question = batch
    assert as_inputs((images, question)).image is images
    assert as_inputs({"question": question, "images": images}).image is images
    assert as_inputs(Inputs(images, question=question)).image is images
    two = as_inputs((images, images.clone()), image=1)
    assert two.image is two.args[1]
    with pytest.raises(ValueError, match=r"cannot tell which input is the image: .* are 0, 1; pass image="):
        as_inputs((images, images.clone()))
    with pytest.raises(ValueError, match="image='photo' names no input"):
        as_inputs({"images": images}, image="photo")


def test_inputs_whose_batch_sizes_differ_are_refused(batch):
    images, question = batch
    model = ImageAndQuestion()
    before = copy.deepcopy(model.state_dict())
    with pytest.raises(ValueError, match=r"input 1 has shape \(2, 3\), but the image batch has 3 images"):
        camlens.explain(model, (images, question[:2]), layer="relu")
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items()) and model.training


def test_rows_take_the_same_rows_of_every_batched_input(batch):
    images, question = batch
    call = as_inputs(Inputs(images, question, scale=2.0))
    rows = call.rows(torch.tensor([2, 2, 0]))
    assert torch.equal(rows.args[1], question[[2, 2, 0]]) and rows.kwargs == {"scale": 2.0}
    masked = torch.zeros(3, 3, 8, 8)
    assert rows.args[0].shape == (3, 3, 8, 8) and call.rows(torch.tensor([2, 2, 0]), masked).args[0] is masked


def test_every_method_on_a_multi_input_model_matches_each_image_alone(batch):
    """Explaining three (image, question) pairs together gives each pair's explanation alone:
    every method takes the right question for each row, also on modified activations and images."""
    images, question = batch
    model = ImageAndQuestion()
    together = camlens.explain(model, (images, question), layer="relu", methods=METHODS, target=[1, 3, 0])
    for image in range(3):
        alone = camlens.explain(model, (images[image:image + 1], question[image:image + 1]), layer="relu",
                                methods=METHODS, target=[[1, 3, 0][image]])
        for method in METHODS:
            torch.testing.assert_close(together.maps[method][image], alone.maps[method][0], rtol=1e-4, atol=1e-6)


def test_the_sliced_network_after_the_layer_agrees_with_full_forwards(batch, monkeypatch):
    images, question = batch
    model = ImageAndQuestion()
    perturbation = ("ablationcam", "liftcam", "shapley")
    sliced = camlens.explain(model, (images, question), layer="relu", methods=perturbation)

    def untraceable(self, call):
        raise RuntimeError("no tracing in this test")

    monkeypatch.setattr(AfterLayer, "_cut", untraceable)
    with pytest.warns(RuntimeWarning, match="using full forward passes"):
        full = camlens.explain(model, (images, question), layer="relu", methods=perturbation)
    for method in perturbation:
        torch.testing.assert_close(sliced.weights[method], full.weights[method], rtol=1e-4, atol=1e-6)


def test_ablation_weights_by_brute_force_on_a_multi_input_model(batch):
    images, question = batch
    model = ImageAndQuestion()
    explanation = camlens.explain(model, (images, question), layer="relu", methods="ablationcam", target=2)
    score = model(images, question)[:, 2].detach()
    for channel in range(6):
        handle = model.relu.register_forward_hook(lambda m, i, out: out.index_fill(1, torch.tensor([channel]), 0.0))
        ablated = model(images, question)[:, 2].detach()
        handle.remove()
        torch.testing.assert_close(explanation.weights["ablationcam"][:, channel], (score - ablated) / score.abs())


def test_score_cam_masks_the_image_and_passes_the_question_unchanged(batch):
    images, question = batch
    model = ImageAndQuestion()
    explanation = camlens.explain(model, (images, question), layer="relu", methods="scorecam", target=0)
    masked_calls = model.calls[1:]  # the first call is the explained forward pass
    assert masked_calls
    for call in masked_calls:  # each call: masks of one image, every row with that image's question
        assert (call == call[:1]).all() and any(torch.equal(call[0], q) for q in question)
    assert sum(call.shape[0] for call in masked_calls) == int((explanation.activations.flatten(2).std(dim=2) > 0).sum())


def test_keyword_inputs_and_guided_backprop_differentiate_the_image(batch):
    images, question = batch
    model = ImageAndQuestion()
    explanation = camlens.explain(model, Inputs(images, question=question, scale=3.0), layer="relu",
                                  methods=("guided_backprop", "gradcam"))
    assert explanation.input_maps["guided_backprop"].shape == images.shape
    plain = camlens.explain(model, Inputs(images, question=question), layer="relu", methods="gradcam")
    torch.testing.assert_close(explanation.weights["gradcam"], 3 * plain.weights["gradcam"])


def test_inputs_move_to_a_device_and_a_model_says_where_it_is():
    from torch import nn

    from camlens.engine.inputs import as_inputs
    from camlens.engine.modelstate import model_device

    images, tokens = torch.rand(2, 3, 8, 8, dtype=torch.float64), torch.tensor([[1, 2], [3, 4]])
    moved = as_inputs((images, tokens, "greedy")).to("meta")
    assert [getattr(a, "device", a) for a in moved.args] == [torch.device("meta")] * 2 + ["greedy"]
    assert moved.image_key == 0 and moved.args[0].dtype == torch.float64
    assert as_inputs(images).to(None).image is images
    assert model_device(nn.Linear(2, 2)) == torch.device("cpu") and model_device(nn.ReLU()) is None
