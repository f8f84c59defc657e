"""``camlens evaluate``: methods × metrics over a dataset, one model and one layer, resumable.

- :mod:`~camlens.evaluate.protocol`: how a run measures, recorded and checked on resume;
- :mod:`~camlens.evaluate.runner`: :func:`evaluate` itself, one image at a time;
- :mod:`~camlens.evaluate.summary`: the table and curves, computed from the results file alone.

The per-image ``results.jsonl`` is a JSON-lines file of :mod:`camlens.data.jsonl`, appended
image by image; :func:`read_results` reads it.
"""

from ..data.jsonl import read_jsonl as read_results
from .protocol import Protocol, ProtocolMismatch
from .runner import check_dataset, check_groups, evaluate
from .summary import Summary, summarize

__all__ = ["evaluate", "Protocol", "ProtocolMismatch", "check_groups", "check_dataset", "read_results", "Summary",
           "summarize"]
