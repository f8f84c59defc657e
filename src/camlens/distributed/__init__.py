"""Explain and evaluate whole datasets on Ray Data (the extra ``camlens[ray]``): a local Ray by
default, or a cluster, with the same records as a single process, written as Parquet shards and
resumable. See :mod:`~camlens.distributed.pipeline`."""

from .pipeline import RayRun, evaluate_on_ray, explain_on_ray
from .shards import FolderInUse, SettingsMismatch, Shards

__all__ = ["explain_on_ray", "evaluate_on_ray", "RayRun", "Shards", "SettingsMismatch", "FolderInUse"]
