"""A user's weights file into a model: what ``weights=PATH`` means for every model that takes one."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

__all__ = ["load_state"]


def load_state(model: nn.Module, path: str | Path, name: str) -> None:
    """Load the weights file ``path`` into ``model`` (``name`` is for messages): a state dict
    saved with ``torch.save(model.state_dict(), path)``, or a checkpoint that holds one under
    ``"state_dict"`` or ``"model"``; the ``module.`` prefix of ``DataParallel`` is dropped. Every
    key must fit: a missing file is ``FileNotFoundError``, weights of another shape a
    ``ValueError`` naming the first keys that do not fit."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file {path} not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - pickle, zip and torch errors share no base
        raise ValueError(f"{path} is not a weights file torch.load can read safely "
                         f"({type(error).__name__}: {error})") from None
    if isinstance(state, dict):
        state = next((state[key] for key in ("state_dict", "model") if isinstance(state.get(key), dict)), state)
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path} holds no state dict (a dict of tensors, as model.state_dict() gives)")
    state = {key.removeprefix("module."): value for key, value in state.items()}
    own = model.state_dict()
    missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    shapes = [key for key in set(own) & set(state) if own[key].shape != state[key].shape]
    if missing or unexpected or shapes:
        found = [f"{len(missing)} missing ({', '.join(missing[:3])})" if missing else "",
                 f"{len(unexpected)} unexpected ({', '.join(unexpected[:3])})" if unexpected else "",
                 f"{len(shapes)} of another shape ({', '.join(sorted(shapes)[:3])})" if shapes else ""]
        raise ValueError(f"the weights in {path} do not fit {name}: keys {'; '.join(f for f in found if f)}. For a "
                         "model of another shape (other classes, say), build it in Python and use camlens.wrap")
    model.load_state_dict(state)
