"""``camlens evaluate``: methods × metrics over a dataset, one model and one layer, resumable.

- :mod:`~camlens.evaluate.protocol`: how a run measures, recorded and checked on resume;
- :mod:`~camlens.evaluate.records`: the per-image ``results.jsonl``, appended image by image;
- :mod:`~camlens.evaluate.runner`: :func:`evaluate` itself, one image at a time;
- :mod:`~camlens.evaluate.summary`: the table and curves, computed from the results file alone.
"""

from .protocol import Protocol, ProtocolMismatch
from .records import read_results
from .runner import check_dataset, check_groups, evaluate
from .summary import Summary, summarize

__all__ = ["evaluate", "Protocol", "ProtocolMismatch", "check_groups", "check_dataset", "read_results", "Summary",
           "summarize"]
