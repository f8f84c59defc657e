r"""The registry of CAM methods: each name, what it produces, its rule and its paper.

A *weight* method gives channel weights ``w`` (N, K) and the map ``L = ReLU(Σ_k w_k A^k)``; a
*spatial* method gives the map before its ReLU directly; an *input* method gives an attribution
at input resolution (Guided Backpropagation and Guided Grad-CAM, computed by
:func:`camlens.explain` from guided input gradients). A *perturbation* method evaluates the
network after the layer (or the whole network) on modified activations or inputs; its rule takes
the shared :class:`~camlens.methods.evidence.Evidence` and its options.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import partial
from types import MappingProxyType
from typing import Literal

from .ablation import ablation_weights
from .attention import gradient_rollout, rollout
from .gradient import (
    counterfactual_weights,
    gradcam_weights,
    gradcampp_weights,
    hirescam_saliency,
    layercam_saliency,
    xgradcam_weights,
)
from .liftcam import liftcam_weights
from .scorecam import scorecam_weights
from .shapley import shapley_weights

__all__ = ["Method", "MethodKind", "METHODS", "check_method_names"]


MethodKind = Literal["weights", "spatial", "input", "perturbation", "attention"]


@dataclass(frozen=True)
class Method:
    """A CAM method: its name, what it produces, the rule, the paper, and the ``title`` pictures
    show it under. Perturbation rules return channel weights, or ``(weights, standard errors)``
    when they are estimates."""

    name: str
    kind: MethodKind
    paper: str
    rule: Callable[..., object] | None = None
    needs_gradients: bool = True
    title: str = ""  # default: the name

    def __post_init__(self) -> None:
        if not self.title:
            object.__setattr__(self, "title", self.name)


METHODS: Mapping[str, Method] = MappingProxyType({
    method.name: method
    for method in (
        # CAM's weights are the classifier's row for the class; camlens.explain reads them from
        # the model's final linear layer (see camlens.methods.cam.classifier_weights).
        Method("cam", "weights", "Zhou et al., Learning Deep Features for Discriminative Localization, CVPR 2016",
               needs_gradients=False, title="CAM"),
        Method("gradcam", "weights", "Selvaraju et al., Grad-CAM, ICCV 2017", gradcam_weights, title="Grad-CAM"),
        Method("gradcam_counterfactual", "weights", "Selvaraju et al., Grad-CAM, ICCV 2017 (counterfactual)",
               counterfactual_weights, title="Counterfactual Grad-CAM"),
        Method("gradcampp", "weights", "Chattopadhyay et al., Grad-CAM++, WACV 2018", gradcampp_weights,
               title="Grad-CAM++"),
        Method("xgradcam", "weights", "Fu et al., Axiom-based Grad-CAM, BMVC 2020", xgradcam_weights,
               title="XGrad-CAM"),
        Method("layercam", "spatial", "Jiang et al., LayerCAM, IEEE TIP 2021", layercam_saliency, title="LayerCAM"),
        Method("hirescam", "spatial", "Draelos & Carin, Use HiResCAM instead of Grad-CAM, 2020", hirescam_saliency,
               title="HiResCAM"),
        Method("guided_backprop", "input", "Springenberg et al., Striving for Simplicity, ICLR 2015 workshop",
               title="Guided Backprop"),
        Method("guided_gradcam", "input", "Selvaraju et al., Grad-CAM, ICCV 2017 (Guided Grad-CAM)",
               title="Guided Grad-CAM"),
        Method("ablationcam", "perturbation", "Desai & Ramaswamy, Ablation-CAM, WACV 2020", ablation_weights,
               needs_gradients=False, title="Ablation-CAM"),
        Method("scorecam", "perturbation", "Wang et al., Score-CAM, CVPR Workshops 2020", scorecam_weights,
               needs_gradients=False, title="Score-CAM"),
        Method("scorecam_fast", "perturbation", "Score-CAM on the top-32 channels by gradient contribution (camlens)",
               partial(scorecam_weights, top=32), title="Score-CAM (top 32)"),
        Method("liftcam", "perturbation", "Jung & Oh, Towards Better Explanations of Class Activation Mapping, ICCV 2021",
               liftcam_weights, needs_gradients=False, title="LIFT-CAM"),
        Method("rollout", "attention", "Abnar & Zuidema, Quantifying Attention Flow in Transformers, ACL 2020",
               rollout, needs_gradients=False, title="Attention rollout"),
        Method("gradient_rollout", "attention", "Chefer, Gur & Wolf, Generic Attention-model Explainability, ICCV 2021",
               gradient_rollout, needs_gradients=False, title="Gradient-weighted rollout"),
        Method("shapley", "perturbation", "Shapley values of the maps (the reference of Jung & Oh, ICCV 2021)",
               shapley_weights, needs_gradients=False, title="Shapley values"),
    )
})


def check_method_names(methods: str | Iterable[str]) -> tuple[str, ...]:
    """The requested method names, de-duplicated in order: a name, a comma-separated string of
    names or a sequence of names, in any case (``"GradCAM, xgradcam"``). ``ValueError`` naming
    close matches and the available methods for an unknown one, or when none is given."""
    pieces = methods.split(",") if isinstance(methods, str) else [str(m) for m in methods]
    names = tuple(name.strip().lower() for name in pieces if name.strip())
    if not names:
        raise ValueError(f"no method requested; choose from {', '.join(METHODS)}")
    for name in names:
        if name not in METHODS:
            close = difflib.get_close_matches(str(name), list(METHODS), n=3)
            hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
            raise ValueError(f"unknown method {name!r}.{hint} Available: {', '.join(METHODS)}")
    return tuple(dict.fromkeys(names))
