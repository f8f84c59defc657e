r"""Token layers: transformer outputs as the (B, C, h, w) maps every CAM method works on.

A vision transformer's block outputs a sequence of tokens (B, N, C): ``P`` prefix tokens (the class
token, a distillation token, registers) and then one token per patch, row by row, ``N = P + h·w``.
Swin and other hierarchical transformers keep their tokens on the grid, channels last
(B, h, w, C). :class:`TokenLayout` says which, and converts both ways:

.. math:: A^k_{ij} = X_{P + i\,w + j,\;k} \qquad\text{(tokens)}, \qquad A^k_{ij} = X_{ij k} \qquad\text{(channels last)}

so that a method's weights :math:`\alpha_k` are per channel (per feature of the embedding), its
maps per patch, and the prefix tokens, which lie on no patch, are kept as they were. Going back
(:meth:`TokenLayout.join`) puts modified maps into the layer's own format, with the recorded
prefix tokens, for the methods that evaluate the network after the layer.

:func:`find_layout` finds the layout from the model where it can be known — timm's
``patch_embed.patch_size`` and ``num_prefix_tokens``, torchvision's ``VisionTransformer.patch_size``
(one class token), a Hugging Face ``config.patch_size`` (``vision_config`` for CLIP), timm's
``output_fmt == "NHWC"`` and torchvision's ``SwinTransformer`` for channels-last maps — and
otherwise refuses, saying exactly what to pass. It never guesses how many prefix tokens there are.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from .errors import LayerError

__all__ = ["TokenLayout", "LayoutFinder", "find_layout", "layout_finder", "patch_size_of"]


@dataclass(frozen=True)
class TokenLayout:
    """How a token layer's output lies on the image.

    Args:
        prefix: tokens before the patch tokens that lie on no patch (class, distillation, register
            tokens): 1 for ViT, 2 for DeiT distilled, 0 for models without a class token.
        grid: (h, w) of the patch tokens, row by row; ``N = prefix + h·w``.
        channels_last: the output is (B, h, w, C) maps rather than a (B, N, C) sequence (Swin);
            ``prefix`` and ``grid`` are then not used.
    """

    prefix: int = 0
    grid: tuple[int, int] | None = None
    channels_last: bool = False

    def __post_init__(self) -> None:
        if self.channels_last:
            return
        if self.prefix < 0:
            raise ValueError(f"prefix must be at least 0, not {self.prefix}")
        if self.grid is None or len(self.grid) != 2 or min(self.grid) < 1:
            raise ValueError(f"a token layout needs grid=(h, w) with h, w ≥ 1, not {self.grid!r}")

    def describe(self) -> str:
        if self.channels_last:
            return "channels-last maps"
        return f"{self.prefix} prefix + {self.grid[0]}×{self.grid[1]} patch tokens"

    def check(self, output: torch.Tensor, layer: str) -> None:
        """A :class:`~camlens.engine.layers.LayerError` when ``output`` does not have this layout."""
        if self.channels_last:
            if output.dim() != 4:
                raise LayerError(f"layer {layer!r} outputs shape {tuple(output.shape)}, not (B, h, w, C) maps: "
                                 "channels_last=True does not fit it")
            return
        if output.dim() != 3:
            kind = "(B, C, h, w) maps, which need no layout (leave tokens= out)" if output.dim() == 4 else "no tokens"
            raise LayerError(f"tokens={self!r} was given, but layer {layer!r} outputs shape {tuple(output.shape)}: {kind}")
        count = self.prefix + self.grid[0] * self.grid[1]
        if output.shape[1] != count:
            raise LayerError(f"layer {layer!r} outputs {output.shape[1]} tokens, but tokens={self!r} means "
                             f"{self.prefix} + {self.grid[0]}×{self.grid[1]} = {count}")

    def split(self, output: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The layer's output → maps (B, C, h, w) and the prefix tokens (B, P, C) (``None`` for
        channels-last maps and layouts without prefix)."""
        if self.channels_last:
            return output.permute(0, 3, 1, 2), None
        batch, _, channels = output.shape
        maps = output[:, self.prefix:].reshape(batch, *self.grid, channels).permute(0, 3, 1, 2)
        return maps, (output[:, : self.prefix] if self.prefix else None)

    def join(self, maps: torch.Tensor, prefix: torch.Tensor | None) -> torch.Tensor:
        """Maps (M, C, h, w) and prefix tokens (M, P, C) → the layer's own format, as a new
        contiguous tensor (never a view of ``maps``: what follows the layer may work in place)."""
        if self.channels_last:
            return maps.permute(0, 2, 3, 1).clone(memory_format=torch.contiguous_format)
        tokens = maps.flatten(2).transpose(1, 2)
        return torch.cat([prefix, tokens], dim=1) if prefix is not None else tokens.clone(memory_format=torch.contiguous_format)


def patch_size_of(model: nn.Module) -> int | None:
    """The patch size a model declares (timm, torchvision or Hugging Face), or ``None``."""
    embed = getattr(model, "patch_embed", None)
    if embed is not None and getattr(embed, "patch_size", None) is not None:
        return _side(embed.patch_size)
    if type(model).__name__ == "VisionTransformer" and isinstance(getattr(model, "patch_size", None), int):
        return model.patch_size  # torchvision
    config = getattr(model, "config", None)
    config = getattr(config, "vision_config", config)
    if config is not None and getattr(config, "patch_size", None) is not None:
        return _side(config.patch_size)
    return None


def _side(size: object) -> int:
    return int(size[0]) if isinstance(size, (tuple, list)) else int(size)


def _declared_prefix(model: nn.Module) -> int | None:
    """The prefix tokens a model declares: timm's ``num_prefix_tokens``; one class token for
    torchvision's ViT; for Hugging Face models, counted from their embeddings' parameters (a
    class token, a distillation token (DeiT), register tokens (DINOv2 with registers))."""
    if isinstance(getattr(model, "num_prefix_tokens", None), int):
        return model.num_prefix_tokens
    if type(model).__name__ == "VisionTransformer" and hasattr(model, "class_token"):
        return 1
    if getattr(model, "config", None) is not None:
        for module in model.modules():
            cls = getattr(module, "cls_token", None)
            cls = cls if cls is not None else getattr(module, "class_embedding", None)  # CLIP
            if isinstance(cls, torch.Tensor):
                registers = getattr(module, "register_tokens", None)
                return (1 + (getattr(module, "distillation_token", None) is not None)
                        + (registers.shape[1] if isinstance(registers, torch.Tensor) else 0))
    return None


def _channels_last_model(model: nn.Module) -> bool:
    return getattr(model, "output_fmt", None) == "NHWC" or (
        type(model).__name__ == "SwinTransformer" and type(model).__module__.startswith("torchvision"))


def _ancestors(model: nn.Module, layer: str) -> list[nn.Module]:
    """The modules that contain ``layer``, nearest first, ending with ``model``."""
    parts = layer.split(".") if layer else []
    found = [model]
    for part in parts[:-1]:
        found.append(getattr(found[-1], part))
    return found[::-1]


def _declaring_ancestor(model: nn.Module, layer: str) -> nn.Module | None:
    """The nearest module containing ``layer`` that declares a patch size (the transformer
    itself, inside whatever wraps it: a CLIP model's vision tower, a user's wrapper)."""
    return next((m for m in _ancestors(model, layer) if patch_size_of(m) is not None), None)


def _fits(size: tuple[int, int], grid: tuple[int, int]) -> bool:
    """Whether a grid tiles an image of ``size`` (H, W) with square patches of a whole number of pixels."""
    (height, width), (h, w) = size, grid
    return height % h == 0 and width % w == 0 and height // h == width // w


def find_layout(model: nn.Module, layer: str, output: torch.Tensor, image_size: tuple[int, int]) -> TokenLayout | None:
    """The layout of ``layer``'s ``output`` on images of ``image_size`` (H, W): ``None`` for
    (B, C, h, w) maps, a :class:`TokenLayout` for tokens or channels-last maps. The patch size and
    prefix tokens are read from the nearest module containing the layer that declares them. Raises a
    :class:`~camlens.engine.layers.LayerError` that says what to pass when a (B, N, C) output's
    prefix and grid cannot be known from the model."""
    owner = _declaring_ancestor(model, layer)
    if output.dim() == 4:
        nchw, nhwc = tuple(output.shape[2:]), tuple(output.shape[1:3])
        channels_last = any(_channels_last_model(m) for m in _ancestors(model, layer))
        if _fits(image_size, nhwc) and (channels_last or not _fits(image_size, nchw)):
            return TokenLayout(channels_last=True)
        return None
    if output.dim() != 3:
        return None
    count = output.shape[1]
    patch, prefix = (patch_size_of(owner), _declared_prefix(owner)) if owner is not None else (None, None)
    if patch is not None:
        grid = (image_size[0] // patch, image_size[1] // patch)
        extra = count - grid[0] * grid[1]
        if extra >= 0 and (prefix is None or extra == prefix):
            return TokenLayout(prefix=extra, grid=grid)
    candidates = [(p, grid) for p in range(9) for grid in _grids(count - p, image_size)]
    if len(candidates) == 1 and candidates[0][0] == 0:
        return TokenLayout(prefix=0, grid=candidates[0][1])  # every token is a patch of a whole grid: nothing to guess
    hint = (f" ({count} = {candidates[0][0]} + {candidates[0][1][0]}×{candidates[0][1][1]} would fit "
            f"{image_size[0]}×{image_size[1]} images)") if candidates else ""
    example = (f"TokenLayout(prefix={candidates[0][0]}, grid={candidates[0][1]})" if candidates
               else "TokenLayout(prefix=P, grid=(h, w))")
    raise LayerError(f"layer {layer!r} outputs {count} tokens of {output.shape[2]} features, and camlens cannot tell "
                     f"how many are prefix tokens (class, distillation, registers) and which grid the rest form{hint}: "
                     f"pass tokens={example}")


def _grids(patches: int, image_size: tuple[int, int]) -> list[tuple[int, int]]:
    """The grids of ``patches`` tokens that tile an image of ``image_size`` with square patches."""
    if patches < 1:
        return []
    return [(h, patches // h) for h in range(1, patches + 1) if patches % h == 0 and _fits(image_size, (h, patches // h))]



LayoutFinder = Callable[[str, torch.Tensor], TokenLayout | None]


def layout_finder(model: nn.Module, image_size: tuple[int, int], given: TokenLayout | None = None, *,
                  only_where_it_fits: bool = False) -> LayoutFinder:
    """``(layer name, output) → layout`` for images of ``image_size``: the ``given`` layout (for
    every layer, where the caller's check then refuses one it does not fit; or, with
    ``only_where_it_fits``, for the outputs it fits, as when ``layer="auto"`` looks through
    them all), else the one :func:`find_layout` finds from the model."""
    def layout_of(name: str, output: torch.Tensor) -> TokenLayout | None:
        if given is not None:
            if not only_where_it_fits:
                return given
            try:
                given.check(output, name)
                return given
            except LayerError:
                pass
        return find_layout(model, name, output, image_size)

    return layout_of
