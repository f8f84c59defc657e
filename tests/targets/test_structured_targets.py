"""Targets beyond classes, each against a value worked out by hand: captions, CTC readings, boxes,
regions, similarities; and what each refuses."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.nn import functional as F

import camlens
from camlens.targets import BoxTarget, CaptionTarget, CTCTarget, RegionScore, SimilarityTarget


def test_caption_log_probability_by_hand():
    # position 0: logits (0, ln 3, 0, 0) → p = (1/6, 1/2, 1/6, 1/6), the token is 1: log ½
    # position 1: all equal → p = ¼ each, the token is 3: log ¼;  whole caption: log ⅛
    logits = torch.tensor([[[0.0, math.log(3), 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]]])
    whole = CaptionTarget([1, 3])(logits)
    torch.testing.assert_close(whole.scores, torch.tensor([math.log(1 / 8)]))
    assert whole.classes.tolist() == [-1] and whole.positions is None
    per_word = CaptionTarget([1, 3], words=[1, 0])(logits)
    torch.testing.assert_close(per_word.scores, torch.tensor([math.log(1 / 4), math.log(1 / 2)]))
    assert per_word.classes.tolist() == [3, 1] and per_word.positions.tolist() == [1, 0]
    # a padded position is not scored, and rescoring gives the same numbers
    padded = CaptionTarget([1, 0], pad=0)
    torch.testing.assert_close(padded(logits).scores, torch.tensor([math.log(1 / 2)]))
    target = CaptionTarget([1, 3], words=[1, 0])
    rows = target(logits)
    again = target.rescore(logits.expand(2, -1, -1), rows.classes, rows.image_index, rows.positions)
    torch.testing.assert_close(again, rows.scores)


class TinyCaptioner(nn.Module):
    """A = ReLU(1×1 conv of the image) (B, 2, h, w); logits_t = W_t · GAP(A) + E[token_t]: the gradient
    of log p(w | t) w.r.t. A^k_ij is (W_t[w, k] − Σ_v p_v W_t[v, k]) / Z, the same at every position."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 2, 1)
        self.relu = nn.ReLU()
        self.heads = nn.Parameter(torch.randn(3, 5, 2))  # (T, V, K)
        self.embed = nn.Embedding(5, 5)

    def forward(self, images, tokens):
        pooled = self.relu(self.conv(images)).mean(dim=(2, 3))            # (B, K)
        return torch.einsum("tvk,bk->btv", self.heads, pooled) + self.embed(tokens)


def test_caption_word_weights_have_their_closed_form_on_a_multi_input_model():
    model, images = TinyCaptioner(), torch.rand(2, 3, 4, 4)
    prefix, caption = torch.tensor([[1, 2, 3], [1, 4, 4]]), torch.tensor([[2, 3, 0], [4, 4, 0]])
    explanation = camlens.explain(model, (images, prefix), layer="relu", methods="gradcam",
                                  target=CaptionTarget(caption, words=[0, 1]))
    logits = model(images, prefix).detach()
    p = logits.softmax(dim=2)
    for row, (image, step) in enumerate(zip(explanation.image_index.tolist(), explanation.positions.tolist())):
        word = int(caption[image, step])
        expected = (model.heads[step, word] - p[image, step] @ model.heads[step]).detach() / 16
        torch.testing.assert_close(explanation.weights["gradcam"][row], expected)
    assert explanation.targets.tolist() == [2, 3, 4, 4]


def test_ctc_rows_are_the_greedy_path_at_each_characters_first_step():
    # best path: blank, 3, 3, blank, 2, 2, 3 → characters 3 (step 1), 2 (step 4), 3 (step 6)
    path = [0, 3, 3, 0, 2, 2, 3]
    logits = F.one_hot(torch.tensor(path), 4).float()[None] * 2.0
    rows = CTCTarget(blank=0)(logits)
    assert rows.classes.tolist() == [3, 2, 3] and rows.positions.tolist() == [1, 4, 6]
    log_p = math.log(math.exp(2) / (math.exp(2) + 3))
    torch.testing.assert_close(rows.scores, torch.full((3,), log_p))
    with pytest.raises(ValueError, match="reads no character"):
        CTCTarget()(torch.zeros(1, 5, 4).index_fill(2, torch.tensor([0]), 1.0))


def test_region_score_is_the_sum_inside_the_mask():
    heat = torch.arange(8.0).view(1, 2, 2, 2)
    mask = torch.tensor([[1.0, 0.0], [0.0, 0.5]])
    assert RegionScore(mask, channel=1)(heat).scores.item() == 4 + 0.5 * 7
    assert RegionScore(mask)(heat[:, 0]).scores.item() == 0 + 0.5 * 3
    with pytest.raises(ValueError, match="say which one with channel="):
        RegionScore(mask)(heat)
    with pytest.raises(ValueError, match="does not match"):
        RegionScore(torch.ones(3, 3), channel=0)(heat)


def test_similarity_is_the_cosine_with_the_reference():
    embedding = torch.tensor([[3.0, 4.0], [1.0, 0.0]])
    rows = SimilarityTarget(torch.tensor([4.0, 3.0]))(embedding)
    torch.testing.assert_close(rows.scores, torch.tensor([24 / 25, 4 / 5]))
    with pytest.raises(ValueError, match="dimension 3, the model's embedding 2"):
        SimilarityTarget(torch.ones(3))(embedding)
    with pytest.raises(ValueError, match="needs an embedding"):
        SimilarityTarget(torch.ones(2))(torch.ones(2, 2, 3))


class TinyDetector(nn.Module):
    """Detections with fixed boxes whose scores are sums of the layer's channels: detection d of an
    image scores Σ_ij A^d_ij, so its Grad-CAM weights are one-hot (1 for channel d, times 1/Z·Z)."""

    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [20.0, 20.0, 30.0, 30.0], [1.0, 1.0, 11.0, 11.0]])
    labels = torch.tensor([1, 2, 1])

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 1)
        self.relu = nn.ReLU()

    def forward(self, images):
        scores = self.relu(self.conv(images)).sum(dim=(2, 3))
        return [{"boxes": self.boxes, "labels": self.labels, "scores": row} for row in scores]


@pytest.mark.filterwarnings("ignore:camlens cannot evaluate the part")  # a list comprehension: full forwards
def test_box_target_scores_the_matching_detection_with_the_largest_iou():
    model, images = TinyDetector(), torch.rand(2, 3, 4, 4)
    # box (1, 1, 10, 10) overlaps detections 0 (IoU 81/100) and 2 (IoU 81/102) of label 1: 0 wins
    target = BoxTarget([[1.0, 1.0, 10.0, 10.0], [20.0, 20.0, 30.0, 30.0]], labels=[1, 2])
    explanation = camlens.explain(model, images, layer="relu", methods=("gradcam", "ablationcam"), target=target)
    assert explanation.image_index.tolist() == [0, 0, 1, 1] and explanation.positions.tolist() == [0, 1, 0, 1]
    assert explanation.targets.tolist() == [1, 2, 1, 2]
    scores = torch.stack([d["scores"] for d in model(images)]).detach()
    torch.testing.assert_close(explanation.scores, scores[[0, 0, 1, 1], [0, 1, 0, 1]])
    torch.testing.assert_close(explanation.weights["gradcam"], torch.eye(3)[[0, 1, 0, 1]])
    # ablating channel d removes exactly detection d's score: a relative drop of 1 for its own channel
    torch.testing.assert_close(explanation.weights["ablationcam"], torch.eye(3)[[0, 1, 0, 1]])


def test_box_target_refusals():
    model, images = TinyDetector(), torch.rand(1, 3, 4, 4)
    with pytest.raises(ValueError, match=r"reference box 0 \(5.0, 0.0, 1.0, 10.0\) has x1 < x0"):
        BoxTarget([[5.0, 0.0, 1.0, 10.0]], labels=[1])
    with pytest.raises(ValueError, match=r"no detection matches reference box 0 \(40.0, 40.0, 50.0, 50.0\)"):
        camlens.explain(model, images, layer="relu", target=BoxTarget([[40.0, 40.0, 50.0, 50.0]], labels=[1]))
    with pytest.raises(ValueError, match="no detection matches"):  # right place, wrong label
        camlens.explain(model, images, layer="relu", target=BoxTarget([[0.0, 0.0, 10.0, 10.0]], labels=[2]))
    with pytest.warns(RuntimeWarning, match="scores 0"):
        zero = camlens.explain(model, images, layer="relu",
                               target=BoxTarget([[40.0, 40.0, 50.0, 50.0]], labels=[1], missing="zero"))
    assert zero.scores.tolist() == [0.0] and zero.layer_maps["gradcam"].abs().sum() == 0
    with pytest.raises(ValueError, match="needs a detector's output"):
        BoxTarget([[0.0, 0.0, 1.0, 1.0]], labels=[1])(torch.zeros(1, 4))


def test_caption_target_refusals():
    with pytest.raises(ValueError, match="per-position scores .* use a class target"):
        CaptionTarget([1, 2])(torch.zeros(1, 5))
    with pytest.raises(ValueError, match="token 7 at position 1 is outside the vocabulary of 5"):
        CaptionTarget([1, 7])(torch.zeros(1, 2, 5))
    with pytest.raises(ValueError, match="the caption has 3 tokens, the output 2 positions"):
        CaptionTarget([1, 2, 3])(torch.zeros(1, 2, 5))
    with pytest.raises(ValueError, match="word position 4 is out of range"):
        CaptionTarget([1, 2], words=[4])(torch.zeros(1, 2, 5))
    with pytest.raises(ValueError, match="integer ids"):
        CaptionTarget([0.5, 1.0])


@pytest.mark.filterwarnings("ignore:camlens cannot evaluate the part")
def test_an_image_without_reference_boxes_has_no_rows():
    model, images = TinyDetector(), torch.rand(2, 3, 4, 4)
    target = BoxTarget([[[0.0, 0.0, 10.0, 10.0]], []], labels=[[1], []])
    explanation = camlens.explain(model, images, layer="relu", methods=("gradcam", "ablationcam"), target=target)
    assert explanation.image_index.tolist() == [0] and explanation.targets.tolist() == [1]


def test_a_pad_id_outside_the_vocabulary_is_never_read_and_padded_words_are_refused():
    logits = torch.zeros(2, 3, 4)
    scores = CaptionTarget([[1, 2, 9], [1, 9, 9]], pad=9)(logits).scores  # 9 is no token of the 4
    torch.testing.assert_close(scores, torch.tensor([2 * math.log(1 / 4), math.log(1 / 4)]))
    with pytest.raises(ValueError, match="word position 1 is padding"):
        CaptionTarget([[1, 2, 9], [1, 9, 9]], words=[1], pad=9)(logits)


class LegacyTarget(camlens.Target):
    """A user's target written before rows had positions: rescore takes three arguments."""

    def __call__(self, output):
        image_index = torch.arange(output.shape[0])
        return camlens.targets.TargetScores(output[:, 2], image_index, torch.full_like(image_index, 2))

    def rescore(self, output, classes, image_index):
        return output[:, 2]


def test_a_target_without_positions_still_works_with_every_method():
    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))
    images = torch.rand(2, 3, 5, 5)
    legacy = camlens.explain(model, images, layer="1", methods=("ablationcam", "scorecam", "liftcam"),
                             target=LegacyTarget())
    logits = camlens.explain(model, images, layer="1", methods=("ablationcam", "liftcam"), target=2)
    for method in ("ablationcam", "liftcam"):
        torch.testing.assert_close(legacy.weights[method], logits.weights[method])
