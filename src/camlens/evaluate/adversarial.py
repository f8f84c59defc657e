r"""Are maps robust to adversarial noise? The Grad-CAM paper's diagnostic (Selvaraju et al., the
section on adversarial noise): on a photo perturbed, imperceptibly, until the network predicts
another class with high confidence, the map of the class actually present should still localize
it.

:func:`pgd` makes the perturbation (projected gradient descent, Madry et al., ICLR 2018; one
step is FGSM, Goodfellow et al., ICLR 2015). :func:`robustness` runs the diagnostic over a boxed
dataset: per photo, ε and method, whether the attack succeeded, the new class and its confidence,
and for the *original* class on the clean and on the adversarial photo the pointing game (within
15 pixels of a 224-pixel input, scaled to the model's), the share
of the map's energy inside the object's boxes, and the correlation of the two maps. Records go to
``robustness.jsonl`` as they are made, so a killed run resumes; :func:`robustness_summary`
averages them per ε and method.

ε is in units of 1/255 of the pixel range, as attacks are usually given (4 means 4/255).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import torch
from torch import nn
from torch.nn import functional as F

from ..data import Sample, boxes_in_input, read_image, resume_records
from ..engine.modelstate import evaluation_mode
from ..explain import explain
from ..metrics.localization import boxes_mask, energy_in, pointing_hit
from ..models import LoadedModel
from .protocol import model_settings

__all__ = ["EPSILONS", "Attack", "attack", "pgd", "robustness", "robustness_summary", "ROBUSTNESS_COLUMNS",
           "SUCCESS_COLUMNS"]

EPSILONS = (1, 2, 4, 8)  # in 1/255, the Grad-CAM literature's range of imperceptible noise
# what a record holds beyond id, label, epsilon and method
ROBUSTNESS_COLUMNS = ("attack_success", "adversarial_class", "adversarial_confidence", "original_confidence",
                      "pointing_clean", "pointing_adversarial", "energy_clean", "energy_adversarial", "map_correlation")
# what the summary also averages over the successful attacks alone
SUCCESS_COLUMNS = ("pointing_clean", "pointing_adversarial", "energy_clean", "energy_adversarial", "map_correlation")


def pgd(model: nn.Module, images: torch.Tensor, classes: torch.Tensor, epsilon: float, mean: Sequence[float],
        std: Sequence[float], *, steps: int = 10, step_size: float | None = None, targeted: bool = False,
        multilabel: bool = False) -> torch.Tensor:
    r"""Adversarial images for ``model`` within an L∞ ball of radius ``epsilon`` (in [0, 1] pixel
    units: 4/255, say) around ``images`` (B, C, H, W), which are normalized as the model expects,
    :math:`x_n = (x - \mu) / \sigma`. In pixel space, from the photo itself (no random start, so
    the attack is deterministic):

    .. math:: x_{t+1} = \Pi_{\lVert x' - x \rVert_\infty \le \varepsilon,\ x' \in [0, 1]}
              \big(x_t + \alpha\, \mathrm{sign}\, \nabla_x \ell(x_t)\big)

    with :math:`\ell = \mathrm{CE}(f(x), y)` for the true ``classes`` (untargeted: the loss of the
    true class is pushed up) or :math:`\ell = -\mathrm{CE}(f(x), t)` for ``targeted`` attacks toward
    ``classes`` :math:`t`; for a ``multilabel`` model (sigmoid outputs) the cross-entropy is the
    class's binary one, :math:`-\log \sigma(z_y)`, so that the attack removes (or adds) that
    label alone. :math:`\alpha = 2.5\,\varepsilon / T` (Madry et al.) unless ``step_size`` is
    given. ``steps=1, step_size=epsilon`` is FGSM. Returned normalized, as
    ``images``, detached. The model is run in eval mode and left as it was; only the input is
    differentiated (no parameter's ``.grad`` is touched)."""
    if epsilon < 0 or steps < 1:
        raise ValueError(f"epsilon must be ≥ 0 and steps ≥ 1, not {epsilon} and {steps}")
    mean_ = torch.tensor(mean, dtype=images.dtype, device=images.device).view(1, -1, 1, 1)
    std_ = torch.tensor(std, dtype=images.dtype, device=images.device).view(1, -1, 1, 1)
    photo = (images.detach() * std_ + mean_).clamp(0, 1)
    alpha = step_size if step_size is not None else 2.5 * epsilon / steps
    classes = classes.to(images.device)
    adversarial = photo.clone()
    with evaluation_mode(model), torch.enable_grad():
        for _ in range(steps):
            adversarial.requires_grad_(True)
            logits = model((adversarial - mean_) / std_)
            if multilabel:
                chosen = logits.gather(1, classes[:, None])[:, 0]
                loss = F.binary_cross_entropy_with_logits(chosen, torch.ones_like(chosen))
            else:
                loss = F.cross_entropy(logits, classes)
            gradient, = torch.autograd.grad(-loss if targeted else loss, adversarial)
            with torch.no_grad():
                adversarial = adversarial + alpha * gradient.sign()
                adversarial = torch.min(torch.max(adversarial, photo - epsilon), photo + epsilon).clamp(0, 1)
    return ((adversarial - mean_) / std_).detach()


class Attack(NamedTuple):
    """An attack's outcome, per image: the adversarial ``images`` (normalized), the model's
    ``probabilities`` on them (sigmoids for a multi-label model), its ``predicted`` class and
    that class's ``confidence``, and whether the attack ``succeeded``."""

    images: torch.Tensor
    probabilities: torch.Tensor
    predicted: torch.Tensor
    confidence: torch.Tensor
    succeeded: torch.Tensor


def attack(model: LoadedModel, images: torch.Tensor, labels: torch.Tensor, epsilon: float,
           target: int | None = None, steps: int = 10) -> Attack:
    """:func:`pgd` on a zoo model's ``images`` at ``epsilon`` (in 1/255), untargeted (away from
    ``labels``) or toward ``target``, and its outcome. Success: for a softmax model, the top class
    is no longer the label (is the target); for a multi-label model, the label's sigmoid falls
    below 0.5 (the target's rises above it), whatever else is predicted."""
    multilabel = model.task == "multilabel"
    goal = labels if target is None else torch.full_like(labels, target)
    adversarial = pgd(model.model, images, goal, epsilon / 255, model.preprocessing.mean, model.preprocessing.std,
                      steps=steps, targeted=target is not None, multilabel=multilabel)
    with evaluation_mode(model.model), torch.no_grad():
        logits = model.model(adversarial)
    probabilities = logits.sigmoid() if multilabel else logits.softmax(dim=1)
    confidence, predicted = probabilities.max(dim=1)
    if multilabel:
        succeeded = probabilities.gather(1, goal[:, None])[:, 0] < 0.5 if target is None else \
            probabilities[:, target] > 0.5
    else:
        succeeded = predicted != labels if target is None else predicted == target
    return Attack(adversarial, probabilities, predicted, confidence, succeeded)


def _correlation(a: torch.Tensor, b: torch.Tensor) -> float:
    """Pearson's correlation of two maps (NaN when either is constant)."""
    a, b = a.flatten().double(), b.flatten().double()
    a, b = a - a.mean(), b - b.mean()
    norm = float(a.norm() * b.norm())
    return float(a @ b) / norm if norm > 0 else math.nan


def robustness(model: LoadedModel, samples: Sequence[Sample], methods: Sequence[str], out: str | Path, *,
               epsilons: Sequence[float] = EPSILONS, target: int | None = None, steps: int = 10,
               layer: str | None = None, images_per_step: int = 8, resume: bool = True,
               progress: bool = True) -> list[dict]:
    """The adversarial-noise diagnostic on ``samples`` (each with a label and boxes of it), one
    record per photo, ε and method appended to ``out/robustness.jsonl`` (see the module
    docstring); returns every record of the file. Untargeted by default; ``target`` attacks toward
    that class (photos of it are skipped). For a multi-label model (``task == "multilabel"``) the
    attack removes the photo's label (or adds ``target``), succeeding when the label's sigmoid
    falls below 0.5 (the target's rises above it); confidences are sigmoids. A resumed run (``resume``) skips the photos already
    in the file. The maps are the original class's, at ``layer`` (the model's by default)."""
    if not methods:
        raise ValueError("no method to measure")
    if not epsilons or any(e <= 0 for e in epsilons):
        raise ValueError(f"epsilons must be positive (in 1/255), not {list(epsilons)}")
    unusable = [s.id for s in samples if s.label is None or not s.boxes_of(s.label)]
    if unusable:
        raise ValueError(f"{len(unusable)} image(s) have no label or no box of it (e.g. {unusable[0]}): the diagnostic "
                         "measures whether the original class's map stays on its object")
    layer = layer or model.layer
    preprocessing = model.preprocessing
    # the pointing game's 15 pixels are of a 224-pixel input: scaled to this model's
    tolerance = 15 * max(preprocessing.size) / 224

    def step(group: list[Sample]) -> list[dict]:
        photos = [read_image(sample.path) for sample in group]
        images = model.batch(photos)
        labels = torch.tensor([sample.label for sample in group], device=model.device)
        regions = [boxes_mask(boxes_in_input(sample.boxes_of(sample.label), photo.size, preprocessing),
                              preprocessing.size) for sample, photo in zip(group, photos)]
        clean = explain(model.model, images, layer, methods, labels)
        records = []
        for epsilon in epsilons:
            outcome = attack(model, images, labels, epsilon, target, steps)
            attacked = explain(model.model, outcome.images, layer, methods, labels)
            succeeded, predicted = outcome.succeeded.tolist(), outcome.predicted.tolist()
            confidence = outcome.confidence.tolist()
            original = outcome.probabilities.gather(1, labels[:, None])[:, 0].tolist()
            for i, sample in enumerate(group):
                shared = {"id": sample.id, "label": sample.label, "epsilon": epsilon,
                          "attack_success": succeeded[i], "adversarial_class": predicted[i],
                          "adversarial_confidence": confidence[i], "original_confidence": original[i]}
                for method in methods:
                    before, after = clean.maps[method][i].cpu(), attacked.maps[method][i].cpu()
                    records.append(shared | {
                        "method": method, "target": target,
                        "pointing_clean": float(pointing_hit(before, regions[i], tolerance)),
                        "pointing_adversarial": float(pointing_hit(after, regions[i], tolerance)),
                        "energy_clean": energy_in(before, regions[i]),
                        "energy_adversarial": energy_in(after, regions[i]),
                        "map_correlation": _correlation(before, after)})
        return records

    settings = model_settings(model, layer) | {"methods": list(methods), "epsilons": list(epsilons),
                                               "steps": steps, "target": target}
    return resume_records(Path(out) / "robustness.jsonl", [s for s in samples if s.label != target], step,
                          settings=settings, per_step=images_per_step, desc="adversarial noise", resume=resume,
                          progress=progress)


def _mean(records: Sequence[dict], column: str) -> float:
    """The mean of a column, NaN correlations (from constant maps) left out."""
    values = [float(r[column]) for r in records if not (isinstance(r[column], float) and math.isnan(r[column]))]
    return sum(values) / len(values) if values else math.nan


def robustness_summary(records: Sequence[dict]) -> list[dict]:
    """The mean of every measure per (ε, method), in the order first met, with the number of
    photos; and, over the photos whose attack succeeded only (``successes`` of them), the means of
    :data:`SUCCESS_COLUMNS`, suffixed ``_succeeded``: the paper's claim is about those (a photo
    whose prediction did not change says little)."""
    rows: dict[tuple, list[dict]] = {}
    for record in records:
        rows.setdefault((record["epsilon"], record["method"]), []).append(record)
    summary = []
    for (epsilon, method), found in rows.items():
        row = {"epsilon": epsilon, "method": method, "images": len(found)}
        row |= {column: _mean(found, column) for column in ROBUSTNESS_COLUMNS if column != "adversarial_class"}
        succeeded = [r for r in found if r["attack_success"]]
        row["successes"] = len(succeeded)
        row |= {f"{column}_succeeded": _mean(succeeded, column) for column in SUCCESS_COLUMNS}
        summary.append(row)
    return summary
