"""The network *after* a layer, as a function of that layer's activations.

Perturbation methods (Ablation-CAM, Score-CAM's relatives, LIFT-CAM, Shapley values) evaluate
``y = f_after(A')`` for many modified activations ``A'`` of one image. Recomputing everything
before the layer for each of them is wasted work, so the model is traced with ``torch.fx`` (the
layer kept as one node), the graph is cut at the layer, and the values the after-part needs from
before the layer (skip connections that join later, other branches) are recorded once per image.
The after-part is then a small graph, interpreted on batches of activations with the model's own
modules and parameters (no code is generated and the model is not copied or changed).

The slice verifies itself: on the real activations it must reproduce the model's own output, at
a batch size different from the input's (which catches code that captured the batch size). If
tracing fails or the check does not pass, :class:`AfterLayer` warns, says why, and falls back to
full forward passes with the layer's output replaced.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator

import torch
from torch import fx, nn

from .capture import LayerFormat
from .channelwise import LinearHead, find_linear_head
from .inputs import ModelInputs, as_inputs
from .outputs import OutputSelector, concat_outputs, detach_output, output_difference, select_output, take_rows

__all__ = ["AfterLayer", "chunks"]


class _Untraceable(Exception):
    """The model cannot be cut at the layer by graph tracing (the message says why)."""


class _LayerTracer(fx.Tracer):
    """Traces only the model's own forward and those of the layer's ancestors: every other module
    (the layer itself included) stays one opaque node. The graph is then as small as the cut
    needs, tracing is cheap, and code that torch.fx cannot trace inside other modules (data-dependent
    control flow in a later block, say) does not matter. Functional calls inside opaque modules
    still run, and are still seen by the DeepLIFT rule, at evaluation time."""

    def __init__(self, layer: str):
        super().__init__()
        self.layer = layer

    def is_leaf_module(self, module: nn.Module, qualified_name: str) -> bool:
        if qualified_name == self.layer:
            return True
        is_ancestor = qualified_name == "" or self.layer.startswith(qualified_name + ".")
        # a Sequential is opened too (always traceable): it exposes VGG's classifier.0 to the
        # low-rank path of camlens.engine.channelwise
        return not is_ancestor and type(module) is not nn.Sequential


class _AllRecorded(Exception):
    """Raised to stop a recording run as soon as every wanted value is known."""


class _Recorder(fx.Interpreter):
    """Runs a traced graph until the values of all ``wanted`` nodes are recorded."""

    def __init__(self, module: nn.Module, graph: fx.Graph, wanted: set[fx.Node]):
        super().__init__(module, graph=graph)
        self.wanted = wanted
        self.values: dict[fx.Node, object] = {}

    def run_node(self, node: fx.Node) -> object:
        value = super().run_node(node)
        if node in self.wanted:
            self.values[node] = value
            if len(self.values) == len(self.wanted):
                raise _AllRecorded
        return value

    def record(self, *inputs: object) -> dict[fx.Node, object]:
        if self.wanted:  # nothing to record, nothing to run (e.g. a layer followed only by the head)
            try:
                self.run(*inputs)
            except _AllRecorded:
                pass
        return self.values


def chunks(total: int, size: int) -> Iterator[slice]:
    """Consecutive slices of at most ``size`` covering ``range(total)``."""
    for start in range(0, total, size):
        yield slice(start, min(start + size, total))


def _descendants(nodes: list[fx.Node], roots: set[fx.Node]) -> set[fx.Node]:
    found = set(roots)
    for node in nodes:
        if node not in found and any(arg in found for arg in node.all_input_nodes):
            found.add(node)
    return found


class AfterLayer:
    """``f_after``: the model's (selected) output as a function of one layer's activations.

    Args:
        model: the model, in the mode it should be evaluated in.
        inputs: what the model was called with (an image batch (B, C, H, W), or
            :class:`~camlens.engine.inputs.ModelInputs` for models with several inputs).
        layer: the layer's dotted name.
        activations: the layer's real output on ``inputs`` (B, K, h, w).
        output: the model's real (selected) output on ``inputs``, to verify against.
        call: which call of a reused layer (as in :func:`camlens.explain`).
        calls: how many times the layer is called in one forward pass.
        output_selector: as in :func:`camlens.explain`.
        batch_size: the most activations evaluated at once (bounds memory).
        structured: the output is kept as the model returns it (see :mod:`camlens.engine.outputs`).
        verify_on_first_use: defer the self-check to the first evaluation, where a caller's own
            unmodified rows can settle it (``real=`` of :meth:`__call__`); by default it runs now.
        layer_format: for a token layer (or one returning a tuple), what turns maps back into
            the layer's output (:class:`~camlens.engine.capture.LayerFormat`); ``activations``
            are then the maps (B, C, h, w).
    """

    def __init__(self, model: nn.Module, inputs: ModelInputs | torch.Tensor, layer: str, activations: torch.Tensor,
                 output: object, *, call: int = -1, calls: int = 1, output_selector: OutputSelector = None,
                 batch_size: int = 64, verify_on_first_use: bool = False, structured: bool = False,
                 layer_format: LayerFormat | None = None):
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, not {batch_size}")
        self.model, self.inputs, self.layer = model, as_inputs(inputs).detached(), layer
        self.output_selector, self.structured = output_selector, structured
        self.batch_size = batch_size
        self.layer_format = layer_format if layer_format is not None and layer_format.changes_output else None
        self.call = call % calls
        self.fallback_reason: str | None = None
        self._graph: fx.Graph | None = None
        self._head: LinearHead | None = None
        self._head_verified = False  # the low-rank path's own self-check (see _verify_head)
        self._frontier: list[tuple[object, bool]] = []
        self._pending: tuple[torch.Tensor, object] | None = None  # the self-check still to do
        try:
            self._cut(call)
            # the closed form reads channels of (B, K, h, w) maps straight after the layer
            self._head = find_linear_head(model, self._graph) if self.layer_format is None else None
        except Exception as error:  # any failure of the fast path must leave the slow, exact one
            self._fall_back(error)
            return
        self._pending = (activations.detach(), detach_output(output))
        if not verify_on_first_use:
            self._ensure_verified()

    def _fall_back(self, error: Exception) -> None:
        self.fallback_reason = str(error) if isinstance(error, _Untraceable) else f"{type(error).__name__}: {error}"
        self._graph, self._head, self._frontier, self._pending = None, None, [], None
        warnings.warn(
            f"camlens cannot evaluate the part of {type(self.model).__name__} after {self.layer!r} on its own "
            f"({self.fallback_reason}); using full forward passes instead, which is slower but exact",
            RuntimeWarning, stacklevel=4,
        )

    @property
    def is_sliced(self) -> bool:
        """Whether the fast path (only the network after the layer) is in use."""
        self._ensure_verified()
        return self._graph is not None

    @property
    def has_linear_head(self) -> bool:
        """Whether zeroing single maps takes the low-rank path of :mod:`camlens.engine.channelwise`."""
        self._ensure_verified()
        return self._head is not None

    def _cut(self, call: int) -> None:
        tracer = _LayerTracer(self.layer)
        try:
            graph = tracer.trace(self.model)
        except Exception as error:
            raise _Untraceable(f"torch.fx could not trace the model: {type(error).__name__}: {error}") from error
        nodes = list(graph.nodes)
        layer_nodes = [n for n in nodes if n.op == "call_module" and n.target == self.layer]
        if not layer_nodes:
            raise _Untraceable(f"the traced graph has no call of {self.layer!r}")
        layer_node = layer_nodes[call]
        output_node = next(n for n in reversed(nodes) if n.op == "output")
        after = _descendants(nodes, {layer_node}) - {output_node}
        from_input = _descendants(nodes, {n for n in nodes if n.op == "placeholder"})
        needed = [a for n in [*after, output_node] if n is not layer_node for a in n.all_input_nodes if a not in after]
        frontier = list(dict.fromkeys(needed))

        sub = fx.Graph()
        env: dict[fx.Node, fx.Node] = {layer_node: sub.placeholder("activations")}
        recorded = []
        for node in frontier:
            if node.op == "get_attr":
                env[node] = sub.node_copy(node)
            else:
                env[node] = sub.placeholder(f"frontier_{len(recorded)}")
                recorded.append(node)
        for node in nodes:
            if node in after and node is not layer_node:
                env[node] = sub.node_copy(node, lambda arg: env[arg])
        sub.output(fx.node.map_arg(output_node.args[0], lambda arg: env[arg]))
        self._graph = sub

        # ordinary tensors even when first used under inference mode (Ablation-CAM's): gradient
        # methods that run later (LIFT-CAM) may save them for backward
        with torch.inference_mode(False), torch.no_grad():
            values = _Recorder(self.model, graph, set(recorded)).record(*self.inputs.positional(self.model))
        batch = self.inputs.batch
        computed_after = after - {layer_node}
        for node in recorded:
            value = values[node]
            per_image = isinstance(value, torch.Tensor) and value.dim() > 0 and value.shape[0] == batch
            batched = node in from_input and per_image
            # A value only passed through to the output (an auxiliary output computed before the
            # layer) cannot depend on the activations; anything the after-part computes with must
            # be per-image, or rows of different images could not be evaluated together.
            # (A model's own non-tensor argument, a flag or a scale, is the same for every row.)
            constant_argument = node.op == "placeholder" and not isinstance(value, torch.Tensor)
            if node in from_input and not per_image and not constant_argument and any(
                    user in computed_after for user in node.users):
                raise _Untraceable(
                    f"a value computed from the input before the layer ({node.name}: {type(value).__name__}) is used "
                    "after it and is not a per-image tensor"
                )
            self._frontier.append((value, batched))

    def _frontier_for(self, image_index: torch.Tensor) -> list[object]:
        single = bool((image_index == image_index[0]).all())
        values = []
        for value, batched in self._frontier:
            if not batched:
                values.append(value)
            elif single:  # the common case, many variants of one image: a view, no copy
                first = int(image_index[0])
                values.append(value[first:first + 1].expand(len(image_index), *value.shape[1:]))
            else:
                values.append(value[image_index])
        return values

    def _ensure_verified(self) -> None:
        """The self-check, unless done: on the real activations the slice must reproduce the
        model's own output. Twice the batch, image-major: a batch size the trace cannot have
        captured."""
        if self._pending is None:
            return
        activations = self._pending[0]
        index = torch.arange(activations.shape[0], device=activations.device).repeat_interleave(2)
        with torch.no_grad():
            replayed = [self._evaluate(activations[index[part]], index[part]) for part in chunks(index.numel(), self.batch_size)]
        self._check(concat_outputs(replayed), index)

    def _check(self, replayed: object, image_index: torch.Tensor) -> bool:
        """Settle the pending self-check with the slice's outputs on the real activations of
        images ``image_index``; fall back to full forwards if they differ from the model's."""
        expected = take_rows(self._pending[1], image_index)
        if isinstance(expected, torch.Tensor) and isinstance(replayed, torch.Tensor):
            scale = float(expected.abs().max().clamp_min(1.0))
            same_shape = replayed.shape == expected.shape
            agrees = same_shape and torch.allclose(replayed, expected, rtol=1e-4, atol=1e-4 * scale)
            difference = (replayed - expected).abs().max() if same_shape else "shape"
        else:
            difference = output_difference(replayed, expected)
            agrees = difference <= 2e-4
        if agrees:
            self._pending = None
            return True
        self._fall_back(_Untraceable(f"the sliced network does not reproduce the model's output (max difference {difference})"))
        return False

    def __call__(self, activations: torch.Tensor, image_index: torch.Tensor, *, real: int = 0) -> object:
        """The model's (selected) output for activations (M, K, h, w), row m belonging to image
        ``image_index[m]``. Runs in chunks of ``batch_size`` under the caller's grad mode.

        ``real``: the first ``real`` rows are the unmodified activations of their images. When
        the self-check is still pending, their outputs settle it (saving a separate pass) if they
        lie in the first chunk and that chunk's size differs from the image batch's.
        """
        if activations.shape[0] != image_index.shape[0]:
            raise ValueError(f"{activations.shape[0]} activations but {image_index.shape[0]} image indices")
        parts = []
        for part in chunks(activations.shape[0], self.batch_size):
            if self._pending is not None:
                size = part.stop - part.start
                if part.start == 0 and 0 < real <= size and size != self.inputs.batch:
                    output = self._evaluate(activations[part], image_index[part])
                    first = torch.arange(real, device=image_index.device)
                    if self._check(detach_output(take_rows(output, first)), image_index[:real]):
                        parts.append(output)
                        continue
                self._ensure_verified()
            parts.append(self._evaluate(activations[part], image_index[part]))
        return concat_outputs(parts)

    def _evaluate(self, activations: torch.Tensor, image_index: torch.Tensor) -> object:
        if activations.requires_grad:
            # the after-part may begin with an in-place operation (ReLU(inplace=True)), which
            # must not touch the caller's leaf (or a view of it)
            activations = activations.clone()
        if self.layer_format is not None:  # maps → what the layer returns (tokens, a tuple)
            activations = self.layer_format.restore(activations, image_index)
        if self._graph is not None:
            return self._interpret(self._graph, activations, image_index)
        return self._full_forward(activations, image_index)

    def _interpret(self, graph: fx.Graph, first: object, image_index: torch.Tensor) -> object:
        """Run a cut graph (first input ``first``, then the frontier values of the rows' images)."""
        output = fx.Interpreter(self.model, graph=graph).run(first, *self._frontier_for(image_index))
        return select_output(output, self.output_selector, structured=self.structured)

    def _verify_head(self, activations: torch.Tensor, image_index: torch.Tensor) -> None:
        """The low-rank path's self-check, once: zeroing the strongest map of the first row must
        give what a pass of the network after the layer gives. The modules it recognises as
        channel-wise are recognised by type, and a subclass may compute something else (a
        convolution whose forward adds a channel mix, say): then the exact passes are used."""
        self._head_verified = True
        row = torch.zeros(1, dtype=torch.long, device=activations.device)
        channel = activations[0].abs().sum((1, 2)).argmax()[None]
        with torch.no_grad():
            fast = self.zeroing_channels(activations, image_index, row, channel)
            variant = activations[:1].clone()
            variant[0, channel] = 0
            exact = self._evaluate(variant, image_index[:1])
        difference = output_difference(fast, exact)  # relative to max(1, max |exact|), as the slice's self-check
        if difference > 2e-4:
            self._head = None
            warnings.warn(f"camlens: zeroing maps of {self.layer!r} in closed form does not reproduce a pass of the "
                          f"network after it (max difference {difference:.3g}); using the passes, which is slower "
                          "but exact", RuntimeWarning, stacklevel=4)

    def zeroing_channels(self, activations: torch.Tensor, image_index: torch.Tensor, rows: torch.Tensor,
                         channels: torch.Tensor) -> object:
        """The model's (selected) output when map ``channels[m]`` of ``activations[rows[m]]`` is set
        to zero, for each m; ``activations`` (R, K, h, w) belong to images ``image_index`` (R,).

        Equal to calling this object on the M modified activations, and computed that way unless
        the after-part begins with channel-wise operations and a linear layer: then the linear
        layer's output is updated in closed form (:mod:`camlens.engine.channelwise`)."""
        self._ensure_verified()
        if self._head is not None and not self._head_verified and rows.numel():
            self._verify_head(activations, image_index)
        if self._head is None:
            parts = []
            for part in chunks(rows.numel(), self.batch_size):
                variants = activations[rows[part]].clone()
                variants[torch.arange(variants.shape[0], device=variants.device), channels[part]] = 0
                parts.append(self._evaluate(variants, image_index[rows[part]]))
            return concat_outputs(parts) if parts else activations.new_empty(0)
        pieces, order = [], []
        for row in rows.unique():
            chosen = (rows == row).nonzero().view(-1)
            real, corrections = self._head.corrections(self.model, activations[row:row + 1])
            linear_outputs = real - corrections[channels[chosen]]
            for part in chunks(chosen.numel(), self.batch_size):
                pieces.append(self._interpret(self._head.rest, linear_outputs[part], image_index[rows[chosen[part]]]))
                order.append(chosen[part])
        if not pieces:
            return activations.new_empty(0)
        order_of = torch.cat(order)  # the rows in the order they were computed: put them back in place
        inverse = torch.empty_like(order_of)
        inverse[order_of] = torch.arange(order_of.numel(), device=order_of.device)
        return take_rows(concat_outputs(pieces), inverse)

    def _coalition_basis(self, activations: torch.Tensor, image_index: torch.Tensor,
                         players: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, fx.Graph] | None:
        """:meth:`LinearHead.coalition_basis` of one row, checked: the value of the coalition of
        all ``players`` must be the one computed on its maps (else ``None``, and the caller
        materializes coalitions)."""
        if self._head is None:
            return None
        empty, steps, graph = self._head.coalition_basis(self.model, activations, players)
        grand = self._interpret(graph, empty + steps.sum(dim=0, keepdim=True), image_index)
        everyone = torch.ones(1, players.numel(), dtype=torch.bool, device=players.device)
        real = self._evaluate(self._kept(activations, players, everyone), image_index)
        if not (isinstance(grand, torch.Tensor) and isinstance(real, torch.Tensor)
                and torch.allclose(grand, real, rtol=1e-4, atol=1e-5 * float(real.detach().abs().max().clamp_min(1)))):
            return None
        return empty, steps, graph

    def coalitions(self, activations: torch.Tensor, image_index: torch.Tensor, players: torch.Tensor,
                   masks: torch.Tensor) -> object:
        """The model's (selected) output for coalitions of one row's maps: row m keeps the maps
        ``players[masks[m]]`` of ``activations`` (1, K, h, w) and sets every other map to zero.
        After a linear head, each coalition's value is a sum of precomputed steps
        (:meth:`LinearHead.coalition_basis`); otherwise the maps are materialized."""
        self._ensure_verified()
        with torch.inference_mode():
            basis = self._coalition_basis(activations, image_index, players)
            parts = []
            for part in chunks(masks.shape[0], self.batch_size):
                rows = image_index.expand(part.stop - part.start)
                if basis is None:
                    parts.append(self._evaluate(self._kept(activations, players, masks[part]), rows))
                    continue
                empty, steps, graph = basis
                summed = empty + (masks[part].to(steps.dtype) @ steps.flatten(1)).view(-1, *steps.shape[1:])
                parts.append(self._interpret(graph, summed, rows))
        return concat_outputs(parts)

    def growing(self, activations: torch.Tensor, image_index: torch.Tensor, players: torch.Tensor,
                orders: torch.Tensor) -> object:
        """The model's (selected) output along orders of one row's maps: for each order (a
        permutation of ``players``, one per row of ``orders`` (P, K')), the K' + 1 coalitions
        that keep its first 0, 1, …, K' maps (every other map zero), order by order. After a
        linear head a coalition is the previous one plus one step (a running sum); otherwise the
        maps are materialized."""
        self._ensure_verified()
        count = players.numel()
        with torch.inference_mode():
            basis = self._coalition_basis(activations, image_index, players)
            if basis is None:
                position = torch.empty_like(orders)
                position.scatter_(1, orders, torch.arange(count, device=orders.device).expand_as(orders))
                sizes = torch.arange(count + 1, device=orders.device)
                masks = (position[:, None, :] < sizes[None, :, None]).flatten(0, 1)  # (P (K' + 1), K')
                return self.coalitions(activations, image_index, players, masks)
            empty, steps, graph = basis
            parts = []
            for order in orders:
                running = empty[0]
                for part in chunks(count + 1, self.batch_size):
                    # row t of the chunk: the coalition of the first part.start + t maps of the order
                    summed = steps.new_empty(part.stop - part.start, *steps.shape[1:])
                    summed[0] = running
                    torch.index_select(steps, 0, order[part.start:part.stop - 1], out=summed[1:])
                    for t in range(1, summed.shape[0]):  # row by row: faster than cumsum along rows
                        summed[t] += summed[t - 1]
                    if part.stop <= count:
                        running = summed[-1] + steps[order[part.stop - 1]]
                    parts.append(self._interpret(graph, summed, image_index.expand(summed.shape[0])))
        return concat_outputs(parts)

    @staticmethod
    def _kept(activations: torch.Tensor, players: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """Copies of one row's activations (M, K, h, w) keeping ``players[masks[m]]``, zero elsewhere."""
        kept = masks.new_zeros(masks.shape[0], activations.shape[1])
        kept[:, players] = masks
        return kept.to(activations.dtype)[:, :, None, None] * activations

    def _full_forward(self, activations: object, image_index: torch.Tensor) -> object:
        module = self.model.get_submodule(self.layer)
        seen = [0]

        def replace(_module: nn.Module, _inputs: tuple, output: object) -> object:
            number = seen[0]
            seen[0] += 1
            return activations if number == self.call else None

        handle = module.register_forward_hook(replace)
        try:
            return select_output(self.inputs.rows(image_index)(self.model), self.output_selector, structured=self.structured)
        finally:
            handle.remove()

