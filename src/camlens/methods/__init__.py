"""The CAM methods: the registry (:data:`METHODS`) and each method's rule, one module per family.

Builds on :mod:`camlens.engine` and :mod:`camlens.targets` only.

- :mod:`~camlens.methods.gradient`: Grad-CAM, its counterfactual, Grad-CAM++, XGrad-CAM, LayerCAM,
  HiResCAM: functions of ``(activations, gradients)``;
- :mod:`~camlens.methods.cam`: CAM's classifier weights; :mod:`~camlens.methods.guided`: Guided
  Backpropagation's ReLU rule;
- the network after the layer, through the shared :class:`~camlens.methods.evidence.Evidence`:
  :mod:`~camlens.methods.ablation`, :mod:`~camlens.methods.scorecam`, :mod:`~camlens.methods.liftcam`
  (with :mod:`~camlens.methods.deeplift`'s Rescale rule) and :mod:`~camlens.methods.shapley`.
"""

from .registry import METHODS, Method, MethodKind, check_method_names

__all__ = ["METHODS", "Method", "MethodKind", "check_method_names"]
