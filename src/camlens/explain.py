"""``camlens.explain``: one forward, one backward, every requested method."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import replace
from typing import Any, Literal

import torch
from torch import nn
from torch.nn import functional as F

from .engine.after import AfterLayer
from .engine.capture import Forward, record_forward
from .engine.inputs import ImageKey, as_inputs
from .engine.layers import LayerError, LayerSpec, auto_layer, resolve_layer, spatial_layers
from .engine.modelstate import evaluation_mode, model_device
from .engine.outputs import OutputSelector, batch_size_of, detach_output, select_output
from .engine.tokens import TokenLayout, layout_finder
from .explanation import Explanation
from .methods import METHODS, check_method_names
from .methods.attention import attention_layer_maps
from .methods.cam import classifier_weights
from .methods.evidence import Evidence
from .methods.gradient import weighted_sum
from .methods.guided import GuidedReLUs, GuidedSwitch
from .targets import TargetScores, as_target

__all__ = ["explain"]


def _check_images(images: torch.Tensor) -> None:
    if images.dim() != 4:
        fix = " (add a batch dimension: images.unsqueeze(0))" if images.dim() == 3 else ""
        raise ValueError(f"images must have shape (B, C, H, W); got {tuple(images.shape)}{fix}")
    if images.shape[0] == 0:
        raise ValueError("images is an empty batch (B = 0); nothing to explain")
    if not images.is_floating_point():
        raise TypeError(f"images must be a floating-point tensor (preprocessed for the model), not {images.dtype}")


def _check_finite(images: torch.Tensor, scores: torch.Tensor | None) -> None:
    """NaN or infinite images or target scores are an error. One value is read back from the
    device (the only synchronization of a gradient method's call); the rest only on failure."""
    if bool(torch.isfinite(images).all() & (torch.isfinite(scores).all() if scores is not None else True)):
        return
    finite = torch.isfinite(images)
    if not finite.all():
        bad = sorted({int(i) for i in (~finite).flatten(1).any(dim=1).nonzero().flatten()})
        raise ValueError(f"images contain NaN or infinite values (batch indices {bad})")
    raise ValueError("the target scores are NaN or infinite; the model's output cannot be explained")


def _autocast(dtype: torch.dtype | None, images: torch.Tensor, names: Sequence[str]) -> Callable[[], Any]:
    """A context factory running under :func:`torch.autocast` at ``dtype`` (or doing nothing for
    ``None``); refuses dtypes other than bfloat16 and float16, and the perturbation methods."""
    if dtype is None:
        return nullcontext
    if dtype not in (torch.bfloat16, torch.float16):
        raise ValueError(f"autocast must be torch.bfloat16 or torch.float16, not {dtype}")
    if slow := [name for name in names if METHODS[name].kind == "perturbation"]:
        raise ValueError(f"autocast is for the gradient methods; {', '.join(slow)} evaluate the network after the "
                         "layer against the recorded output, which low precision would blur: explain them in float32")
    return lambda: torch.autocast(device_type=images.device.type, dtype=dtype)


def _unwrapped(model: nn.Module, layer: LayerSpec) -> tuple[nn.Module, LayerSpec, torch.device | None]:
    """A model in ``nn.DataParallel`` or ``DistributedDataParallel`` → its ``module``, with a
    note: an explanation is one forward and backward on one device, which the wrapper would only
    scatter. A layer named through the wrapper (``"module.layer4"``) is renamed, and the device
    the wrapper would have moved the inputs to is returned (``None`` for a plain model)."""
    if not isinstance(model, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
        return model, layer, None
    inner = model.module
    device = model_device(inner)
    warnings.warn(f"explaining the module inside {type(model).__name__} (model.module) on {device}, "
                  "with the inputs moved there as the wrapper would", UserWarning, stacklevel=3)
    if isinstance(layer, str) and layer.startswith("module."):
        layer = layer.removeprefix("module.")
    return inner, layer, device


def _slots(image_index: torch.Tensor, per_image: int | None = None) -> list[torch.Tensor]:
    """Split rows so that no image appears twice in a group: one backward per group then gives
    every row its own gradient (samples do not interact in eval mode). With ``per_image`` rows
    per image, image-major, group ``s`` is every image's ``s``-th row, found without reading
    ``image_index`` back from its device."""
    if per_image is not None:
        return [torch.arange(s, len(image_index), per_image, device=image_index.device) for s in range(per_image)]
    seen: dict[int, int] = {}
    slot_of_row = []
    for image in image_index.tolist():
        slot_of_row.append(seen.get(image, 0))
        seen[image] = slot_of_row[-1] + 1
    slot = torch.tensor(slot_of_row, device=image_index.device)
    return [(slot == s).nonzero().flatten() for s in range(max(seen.values()))]


def _gradients(
    forward: Forward, activations: torch.Tensor, target: TargetScores, switch: GuidedSwitch | None
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Per-row gradients of the target scores w.r.t. the activations, and (when ``switch`` is given)
    guided gradients w.r.t. the input; only ``torch.autograd.grad`` to those tensors."""
    groups = _slots(target.image_index, target.per_image)
    gradients = activations.new_empty((len(target.image_index), *activations.shape[1:]))
    input_gradients = forward.inputs.new_empty((len(target.image_index), *forward.inputs.shape[1:])) if switch else None
    for number, rows in enumerate(groups):
        last = number == len(groups) - 1
        score = target.scores[rows].sum()
        images = target.image_index[rows]
        (grad,) = torch.autograd.grad(score, activations, retain_graph=not last or switch is not None)
        gradients[rows] = grad[images]
        if switch is not None:
            switch.guided = True
            try:
                (guided,) = torch.autograd.grad(score, forward.inputs, retain_graph=not last)
            finally:
                switch.guided = False
            input_gradients[rows] = guided[images]
    return gradients, input_gradients


def explain(
    model: nn.Module,
    inputs: object,
    layer: LayerSpec = "auto",
    methods: str | Sequence[str] = ("gradcam",),
    target: object = None,
    *,
    image: ImageKey | None = None,
    output: OutputSelector = None,
    call: int = -1,
    eval_mode: bool = True,
    batch_size: int | None = None,
    options: Mapping[str, Mapping[str, Any]] | None = None,
    check_finite: bool = True,
    autocast: torch.dtype | None = None,
    progress: bool = False,
    tokens: TokenLayout | Literal["auto"] = "auto",
) -> Explanation:
    """Explain ``model``'s decision on ``inputs`` with one or more CAM methods.

    Args:
        model: any ``nn.Module``; it is left exactly as it was (mode, parameters, hooks).
        inputs: the image batch (B, C, H, W), a float tensor already preprocessed for the model;
            or, for a model with several inputs (an image and a question, say), a tuple of its
            positional arguments, a dict of its keyword arguments, or :class:`camlens.Inputs`
            for both. Every tensor input has the batch in its first dimension; rows of every
            input are taken together (see :mod:`camlens.engine.inputs`).
        layer: a dotted module name (``"layer4"``, ``"features.29"``), the module itself, or
            ``"auto"``: the last layer with a spatial output on these images
            (see :func:`camlens.engine.layers.auto_layer`).
        methods: names from :data:`camlens.METHODS`. All share one forward pass and one backward
            pass (per target row group); Guided methods add a backward to the input over the same forward.
        target: what to explain (see :func:`camlens.targets.as_target`): ``None`` = the top-1
            class of each image, an int, one int per image, ``"top5"``, a Target, or a callable.
        image: which of several inputs is the image (a position or a keyword); by default the
            only 4-D floating-point one. Guided Backpropagation differentiates it, maps are
            upsampled to it and Score-CAM masks it; the other inputs pass through unchanged.
        output: which part of a tuple/dict output to explain (see :func:`camlens.engine.outputs.select_output`).
        call: for a layer the model calls several times in one forward (ResNet's shared ``relu``),
            which call's output to explain: ``-1`` (default) the last one.
        eval_mode: run in eval mode (dropout off, batch-norm running statistics), restoring every
            module's own mode afterwards. With ``False`` and batch-norm in training mode, images
            of a batch influence each other's scores.
        batch_size: the most perturbed activations or images evaluated at once by the
            perturbation methods (bounds their memory). Default: 128 activations for the network
            after the layer (cheap per item, memory-bound), 16 images for full forward passes
            (faster per image on CPUs than larger batches).
        options: per-method keyword options, e.g. ``{"scorecam": {"variant": "baseline"},
            "shapley": {"pairs": 64, "seed": 1, "target_error": 0.01}}`` (see each method's rule).
        check_finite: refuse NaN or infinite images and target scores (the default). The check
            reads one value back from the device; with ``False``, the gradient methods' call with
            a class, top-k or region target reads nothing back, and a GPU never waits for the host.
        autocast: ``torch.bfloat16`` or ``torch.float16`` to run the forward and backward passes
            under :func:`torch.autocast` (faster on GPUs with tensor cores); the activations,
            gradients and scores are then taken to float32, so the maps are float32. For the
            gradient family (weights, spatial and input methods) only: the perturbation methods
            compare the network after the layer with the recorded output, which low precision
            would blur. ``benchmarks/bench_gpu.py`` reports the maps' error against float32.
        progress: show transient progress bars within the call for the slow methods (Score-CAM's
            masked images, Shapley's permutations), which can take minutes per image.
        tokens: for a transformer layer whose output is a sequence of tokens (B, N, C) or
            channels-last maps (B, h, w, C): how it lies on the image, as a
            :class:`~camlens.engine.tokens.TokenLayout` (``TokenLayout(prefix=1, grid=(14, 14))``
            for ViT-B/16 at 224 pixels). ``"auto"`` (the default) finds it from the model (timm,
            torchvision and Hugging Face models declare their patch size and prefix tokens) and
            refuses, saying what to pass, where it cannot be known. The maps and weights are then
            per patch and per feature of the embedding; prefix tokens are kept as they were.

    Returns:
        An :class:`~camlens.explanation.Explanation`; see there for the shapes.
    """
    names = check_method_names(methods)
    model, layer, wrapper_device = _unwrapped(model, layer)
    call_inputs = as_inputs(inputs, image)
    if wrapper_device is not None:
        call_inputs = call_inputs.to(wrapper_device)
    images = call_inputs.image
    _check_images(images)
    options = dict(options or {})
    if unused := sorted(set(options) - set(names)):
        raise ValueError(f"options given for {', '.join(unused)}, which were not requested")
    if batch_size is not None and batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, not {batch_size}")
    if not isinstance(tokens, TokenLayout) and tokens != "auto":
        raise TypeError(f"tokens must be a TokenLayout or 'auto', not {tokens!r}")
    given = tokens if isinstance(tokens, TokenLayout) else None
    target_fn = as_target(target)
    kinds = {METHODS[name].kind for name in names}
    low_precision = _autocast(autocast, images, names)
    guided = "input" in kinds
    needs_gradients = guided or any(METHODS[name].needs_gradients for name in names)

    with evaluation_mode(model, eval_mode):
        layer_name = (auto_layer(model, call_inputs, given)
                      if isinstance(layer, str) and layer == "auto" else resolve_layer(model, layer)[0])
        module = model.get_submodule(layer_name) if layer_name else model
        switch = GuidedSwitch() if guided else None
        with GuidedReLUs(switch) if switch else nullcontext(), low_precision():
            try:
                forward = record_forward(model, call_inputs, {layer_name: module}, input_gradients=guided,
                                         find_layout=layout_finder(model, tuple(images.shape[-2:]), given))
            except LayerError as error:  # name the layers that would do (costs a forward pass, on error only)
                candidates = ", ".join(f"{name} {shape}" for name, shape in spatial_layers(model, call_inputs))
                raise LayerError(f"{error.reason} Spatial layers, last first: {candidates or 'none'}.") from None
        with torch.inference_mode(False), torch.enable_grad(), low_precision():
            prediction = select_output(forward.output, output, structured=target_fn.structured)
            if batch_size_of(prediction) not in (None, images.shape[0]):
                raise ValueError(f"the model's output covers {batch_size_of(prediction)} images, the input {images.shape[0]}")
            activations = forward.activations(layer_name, call)
            if activations.shape[0] != images.shape[0]:
                raise ValueError(f"layer {layer_name!r} output has batch size {activations.shape[0]}, the input {images.shape[0]}")
            try:
                scores = target_fn(prediction)
            except Exception:
                if check_finite:  # NaN images make strange outputs: name the images, not the symptom
                    _check_finite(images, None)
                raise
            if check_finite:
                _check_finite(images, scores.scores)
            gradients, input_gradients = (
                _gradients(forward, activations, scores, switch) if needs_gradients else (None, None)
            )
        calls = len(forward.calls[layer_name])
        layer_format = forward.formats[layer_name][call]
        del forward  # the graph after the layer dies here
        activations, prediction = activations.detach(), detach_output(prediction)
        if autocast is not None:  # the methods' arithmetic, and the maps, in float32
            activations, scores = activations.float(), replace(scores, scores=scores.scores.float())
            gradients = gradients.float() if gradients is not None else None
            input_gradients = input_gradients.float() if input_gradients is not None else None
        call_inputs = call_inputs.detached()
        rows_activations = activations[scores.image_index]
        structured = target_fn.structured
        evidence = Evidence(
            activations=rows_activations, gradients=gradients, scores=scores.scores.detach(), classes=scores.classes,
            image_index=scores.image_index, positions=scores.positions, images=call_inputs.image, target=target_fn,
            full_model=lambda batch, index: select_output(call_inputs.rows(index, batch)(model), output,
                                                          structured=structured),
            build_after=lambda: AfterLayer(model, call_inputs, layer_name, activations, prediction, call=call,
                                           calls=calls, output_selector=output, batch_size=batch_size or 128,
                                           verify_on_first_use=True, structured=structured,
                                           layer_format=layer_format),
            batch_size=batch_size or 128,
            image_batch_size=batch_size or 16,
            progress=progress,
        )
        layer_maps: dict[str, torch.Tensor] = {}
        weights: dict[str, torch.Tensor] = {}
        errors: dict[str, torch.Tensor] = {}
        sample_counts: dict[str, torch.Tensor] = {}
        for name in names + (("gradcam",) if "guided_gradcam" in names and "gradcam" not in names else ()):
            method = METHODS[name]
            if method.kind == "weights":
                if name == "cam":
                    weights[name] = classifier_weights(model, activations, prediction, scores.image_index, scores.classes)
                else:
                    weights[name] = method.rule(rows_activations, gradients)
            elif method.kind == "spatial":
                layer_maps[name] = method.rule(rows_activations, gradients).clamp_min(0)
            elif method.kind == "perturbation":
                result = method.rule(evidence, **options.get(name, {}))
                if isinstance(result, tuple):  # an estimate, with its standard errors and sample counts
                    weights[name], errors[name], sample_counts[name] = result
                else:
                    weights[name] = result
            if name in weights:
                layer_maps[name] = weighted_sum(weights[name], rows_activations).clamp_min(0)
        if attending := [name for name in names if METHODS[name].kind == "attention"]:
            layer_maps |= attention_layer_maps(model, call_inputs, attending, target_fn, output,
                                               lambda index: _slots(index, scores.per_image), layer_name,
                                               given)

    size = images.shape[-2:]
    maps: dict[str, torch.Tensor] = {}
    for grid in dict.fromkeys(m.shape[-2:] for m in layer_maps.values()):  # one interpolation per grid
        same = [name for name, m in layer_maps.items() if m.shape[-2:] == grid]
        stacked = torch.stack([layer_maps[name] for name in same], dim=1)
        upsampled = F.interpolate(stacked, size=size, mode="bilinear", align_corners=False)
        maps |= dict(zip(same, upsampled.unbind(dim=1), strict=True))
    input_maps: dict[str, torch.Tensor] = {}
    if "guided_backprop" in names:
        input_maps["guided_backprop"] = input_gradients
    if "guided_gradcam" in names:
        input_maps["guided_gradcam"] = input_gradients * maps["gradcam"].unsqueeze(1)
    for name, attribution in input_maps.items():
        maps[name] = attribution.abs().amax(dim=1)

    keep = lambda table: {name: table[name] for name in names if name in table}  # noqa: E731
    return Explanation(
        layer=layer_name,
        methods=names,
        layer_maps=keep(layer_maps),
        maps=keep(maps),
        weights=keep(weights),
        input_maps=keep(input_maps),
        scores=scores.scores.detach(),
        targets=scores.classes,
        image_index=scores.image_index,
        outputs=prediction,
        activations=activations,
        gradients=gradients,
        errors=errors,
        positions=scores.positions,
        sample_counts=sample_counts,
    )
