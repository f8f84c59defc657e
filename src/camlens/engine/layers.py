"""Finding the layer to explain: by dotted name, by module object, or automatically on the input."""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from .capture import output_tensor, record_forward
from .errors import LayerError
from .inputs import ModelInputs, as_inputs
from .outputs import select_output
from .tokens import TokenLayout, layout_finder

__all__ = ["LayerSpec", "LayerError", "resolve_layer", "layer_output_shapes", "auto_layer", "auto_token_layer",
           "spatial_layers"]

LayerSpec = str | nn.Module

def resolve_layer(model: nn.Module, layer: LayerSpec) -> tuple[str, nn.Module]:
    """Return ``(dotted name, module)`` for a layer given by dotted name or module object.

    Raises ``ValueError`` naming close matches and the candidates when the name is unknown.
    """
    if isinstance(layer, nn.Module):
        for name, module in model.named_modules():
            if module is layer:
                return name, module
        raise ValueError(f"the {type(layer).__name__} module given as layer is not part of the model")
    if not isinstance(layer, str):
        raise TypeError(f"layer must be a dotted module name or an nn.Module, not {type(layer).__name__}")
    modules = dict(model.named_modules())
    if layer and layer in modules:
        return layer, modules[layer]
    names = [name for name in modules if name]
    close = difflib.get_close_matches(layer, names, n=5, cutoff=0.6)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    top = [name for name in names if "." not in name]
    raise LayerError(f"layer {layer!r} not found in {type(model).__name__}.{hint} Top-level layers: {', '.join(top)}.")


@dataclass(frozen=True)
class _Produced:
    name: str
    output: object


def _probe(model: nn.Module, run: Callable[[], object]) -> list[_Produced]:
    """Every named module's output in the order the outputs were produced (last call wins)."""
    produced: dict[str, _Produced] = {}

    def record(name: str):
        def hook(module: nn.Module, inputs: tuple, output: object) -> None:
            produced.pop(name, None)  # re-insert: the order follows a reused module's last call
            produced[name] = _Produced(name, output)

        return hook

    handles = [module.register_forward_hook(record(name)) for name, module in model.named_modules() if name]
    try:
        with torch.no_grad():
            run()
    finally:
        for handle in handles:
            handle.remove()
    return list(produced.values())


def layer_output_shapes(model: nn.Module, inputs: object) -> dict[str, tuple[int, ...] | None]:
    """Run one forward pass on ``inputs`` (an image batch, or a model's several inputs as
    :func:`camlens.explain` takes them) without autograd and return each named module's output
    shape, in the order the outputs were produced; ``None`` where the output is not a tensor."""
    inputs = as_inputs(inputs)
    return {
        p.name: tuple(p.output.shape) if isinstance(p.output, torch.Tensor) else None
        for p in _probe(model, lambda: inputs(model))
    }


def spatial_layers(model: nn.Module, inputs: object, last: int = 5) -> list[tuple[str, tuple[int, ...]]]:
    """The ``last`` layers, last first, whose output on ``inputs`` is a (B, C, h, w) map with
    h·w > 1: the candidates to name when a layer cannot be explained (one forward pass)."""
    shapes = layer_output_shapes(model, inputs)
    spatial = [(name, shape) for name, shape in shapes.items() if shape and len(shape) == 4 and shape[-1] * shape[-2] > 1]
    return spatial[::-1][:last]


def auto_layer(model: nn.Module, inputs: object, tokens: TokenLayout | None = None) -> str:
    """The layer ``"auto"`` means. For a convolutional network: the last module, in the order
    outputs are produced on these images, whose output is a ``(B, C, h, w)`` tensor with
    ``h·w > 1``; when several nested modules return that same tensor (``layer4``, ``layer4.2``,
    ``layer4.2.relu``) the outermost is named. For a transformer (a model with token layers, see
    :mod:`camlens.engine.tokens`): :func:`auto_token_layer`.

    Only the first image is run, so the cost is one forward pass at batch size 1 (and, for a
    transformer, one more with a backward pass). ``tokens``: a layout the user gave, used for
    token outputs it fits instead of the one found from the model.
    """
    inputs = as_inputs(inputs)
    first = inputs.rows(torch.zeros(1, dtype=torch.long, device=inputs.image.device))
    produced = _probe(model, lambda: first(model))
    if (chosen := auto_token_layer(model, first, [(p.name, p.output) for p in produced], tokens)) is not None:
        return chosen
    spatial = [
        p for p in produced
        if isinstance(p.output, torch.Tensor) and p.output.dim() == 4 and p.output.shape[-1] * p.output.shape[-2] > 1
    ]
    if not spatial:
        raise ValueError(
            f"no layer of {type(model).__name__} produces a spatial (B, C, h, w) output on images of shape "
            f"{tuple(inputs.image.shape)}; CAM methods need a convolutional layer"
        )
    last = spatial[-1].output
    same = [p.name for p in spatial if p.output is last]
    return min(same, key=lambda name: (name.count("."), len(name)))


def auto_token_layer(model: nn.Module, first: ModelInputs, produced: list[tuple[str, object]],
                     tokens: TokenLayout | None = None) -> str | None:
    """``layer="auto"`` on a transformer: the output of its last block, where the score's
    gradient reaches the patch tokens there, else the last block's first norm. ``None`` for a
    model without token layers (a CNN). ``produced``: each module's output on ``first`` (one
    image), in the order they were produced.

    Why: a class-token model (ViT, DeiT, CLIP) reads its decision from the class token alone
    after the last block, so the patch tokens of the last block's output, and of everything
    after its attention, get exactly zero gradient — measured on timm's ``vit_tiny_patch16_224``
    and torchvision's ``vit_b_16``: every gradient map would be 0. The last block's first norm
    feeds its attention, through which the patches reach the class token. A model that pools
    its patch tokens (Swin, ViTs with ``global_pool="avg"``) has gradients on its last block,
    the layer the decision is read from, as a CNN's last convolutional block.

    Measured on the scene ViT (``scenes-vit``, three blocks, class token; pointing game on 100
    held-out scenes, Grad-CAM / LayerCAM / HiResCAM): the last block's output 0.00 / 0.00 / 0.00
    (no gradient), its first norm 0.55 / 0.52 / 0.53 (this choice), its input — the other reading
    of "the input of the last block's norm" — 0.50 / 0.42 / 0.50. Earlier blocks' first norms
    score higher there (0.62–0.71), and gradient-weighted rollout, which uses every block's
    attention, higher still (0.94 on 200 scenes: ``benchmarks/bench_vit_scenes.py``): on a
    transformer, prefer it to a single layer's map.
    """
    size = tuple(first.image.shape[-2:])
    layout_of = layout_finder(model, size, tokens, only_where_it_fits=True)
    modules = dict(model.named_modules())
    parent = lambda name: modules.get(name.rpartition(".")[0]) if "." in name else model  # noqa: E731
    in_container = lambda name: isinstance(parent(name), (nn.Sequential, nn.ModuleList))  # noqa: E731
    found: list[tuple[str, torch.Tensor]] = []
    unplaced: list[tuple[int, LayerError]] = []  # blocks whose tokens cannot be placed: (tokens, why)
    for name, output in produced:
        tensor, _ = output_tensor(output)
        if tensor is None or tensor.dim() not in (3, 4):
            continue
        try:
            if layout_of(name, tensor) is not None:
                found.append((name, tensor))
        except LayerError as error:
            if in_container(name) and tensor.dim() == 3:
                unplaced.append((tensor.shape[1], error))
    if not found:
        return None
    blocks = [(name, tensor) for name, tensor in found if in_container(name)]
    patches = {tensor.shape[1] for name, tensor in found if tensor.dim() == 3}  # token counts of whole grids
    beyond = [error for count, error in unplaced if any(0 < count - n <= 8 for n in patches)]
    if beyond and not blocks:  # blocks of patch tokens and a few prefix tokens: never fall back to the embedding
        raise LayerError(f"layer='auto' found transformer blocks whose tokens it cannot place: {beyond[-1].reason}")
    if not blocks:
        return found[-1][0]
    last = blocks[-1][1]
    block = max((name for name, tensor in blocks if tensor is last), key=lambda name: name.count("."))
    if _reaches_patches(model, first, block, modules[block], layout_of):
        return block
    norms = [name for name, _ in found
             if name.startswith(block + ".") and "norm" in type(modules[name]).__name__.lower()]
    return norms[0] if norms else block


def _reaches_patches(model: nn.Module, first: ModelInputs, name: str, module: nn.Module, layout_of) -> bool:
    """Whether the model's top output has a non-zero gradient at the patch tokens of ``name``."""
    forward = record_forward(model, first, {name: module}, find_layout=layout_of)
    maps = forward.calls[name][-1]
    with torch.enable_grad():
        output = select_output(forward.output, None)
        if not isinstance(output, torch.Tensor) or not output.requires_grad:
            return True
        (gradient,) = torch.autograd.grad(output.flatten(1).max(dim=1).values.sum(), maps, allow_unused=True)
    return gradient is not None and bool(gradient.abs().sum() > 0)
