"""Class names ↔ indices, and the ImageNet-1k class names and WordNet IDs that ship with camlens."""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from functools import cache
from importlib import resources

__all__ = ["resolve_class", "imagenet_classes", "imagenet_wnids"]


def _key(name: str) -> str:
    return " ".join(name.replace("_", " ").lower().split())


def resolve_class(spec: str | int, class_names: Sequence[str]) -> int:
    """A class index from an index (``"242"``) or a name (``"boxer"``, ``"tiger cat"``: case,
    underscores and spaces do not matter). Unknown or ambiguous names raise ``ValueError`` with
    the close matches or the candidates."""
    text = str(spec).strip()
    if text.lstrip("-").isdigit():
        index = int(text)
        if not 0 <= index < len(class_names):
            raise ValueError(f"class index {index} is out of range: the model has {len(class_names)} classes (0..{len(class_names) - 1})")
        return index
    keys = [_key(name) for name in class_names]
    matches = [i for i, key in enumerate(keys) if key == _key(text)]
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        raise ValueError(f"class name {text!r} is ambiguous: indices {', '.join(map(str, matches))}; give the index")
    close = difflib.get_close_matches(_key(text), keys, n=4, cutoff=0.6)
    hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else "; give a class index or an exact name"
    raise ValueError(f"unknown class name {text!r}{hint}")


@cache
def imagenet_wnids() -> tuple[str, ...]:
    """The 1000 ImageNet-1k WordNet IDs in the standard index order (sorted)."""
    return tuple(resources.files(__package__).joinpath("imagenet_wnids.txt").read_text(encoding="utf-8").split())


def imagenet_classes() -> tuple[str, ...]:
    """The 1000 ImageNet-1k class names in the standard index order (WordNet IDs sorted)."""
    text = resources.files(__package__).joinpath("imagenet_classes.txt").read_text(encoding="utf-8")
    return tuple(line.replace("_", " ") for line in text.splitlines())
