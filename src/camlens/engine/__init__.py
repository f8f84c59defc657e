"""How camlens reaches a layer: the lowest layer of the package, importing nothing else of it.

- :mod:`~camlens.engine.capture`: one forward pass that records a layer's activations, with
  autograd switched on from that layer only;
- :mod:`~camlens.engine.after`: the network *after* a layer as a function of its activations
  (cut from the model's ``torch.fx`` graph), and :mod:`~camlens.engine.channelwise`, zeroing one
  map as a low-rank update of the first linear layer after it;
- :mod:`~camlens.engine.layers`: layer names, modules and ``"auto"`` resolved to one layer;
- :mod:`~camlens.engine.tokens`: a transformer's tokens (B, N, C) or channels-last maps as the
  (B, C, h, w) maps the methods work on, and back;
- :mod:`~camlens.engine.outputs`: the part of a tuple or dict output to explain;
- :mod:`~camlens.engine.modelstate`: modes restored after an explanation;
- :mod:`~camlens.engine.interception`: what the ``TorchFunctionMode`` rules know about in-place ReLUs.
"""
