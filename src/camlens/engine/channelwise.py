r"""Zeroing one activation map at a time, as a low-rank update of the first linear layer.

Many networks end their convolutional part with operations that treat every channel on its own
(ReLU, pooling, batch-norm in eval mode, dropout in eval mode, depthwise convolutions), flatten,
then a linear layer: VGG (max-pool, average-pool, ``classifier.0``), ResNet (average-pool,
``fc``), MobileNet and EfficientNet heads. Inside an inverted-residual block the first operation
that mixes channels is a pointwise (1×1) convolution instead, after the depthwise one: a linear
layer applied at every position. After such a layer, zeroing map :math:`k` changes the linear
layer's input only in the columns of channel :math:`k`, so

.. math:: W x_{A^k=0} + b = (W x_A + b) - W_{:,k}\,(x_A - x_0)_k

where :math:`x_A` is the flattened input on the real maps, :math:`x_0` on all-zero maps (the
channel-wise operations act on channel :math:`k` alone, so channel :math:`k` of the ablated input
is channel :math:`k` of :math:`x_0`), and :math:`W_{:,k}` are the columns belonging to channel
:math:`k`. All K corrections cost one pass over :math:`W` instead of K rows through it: VGG-16's
first linear layer (411 MB of weights) is read once, not once per map. For a pointwise convolution the
correction of channel :math:`k` is :math:`W_{:,k} \otimes (x_A - x_0)_k` at every position, and
the depthwise convolutions before it run twice (real and zero maps), not once per map. What
follows the linear layer is evaluated on the K corrected rows as usual.

Recognised before the linear layer: the activation modules and functions listed below, max and
average pooling (adaptive too), eval-mode dropout and batch-norm, and depthwise convolutions
(``groups == in_channels == out_channels``); the linear layer is ``nn.Linear`` after a flatten
from dimension 1, or an ungrouped 1×1 ``nn.Conv2d`` of stride 1 without padding. Anything else
(a residual join, a grouped or k×k convolution mixing channels) falls back to full passes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import fx, nn

__all__ = ["LinearHead", "find_linear_head"]

# Modules that compute each output channel from the same input channel alone (every module here
# also keeps the channel count). Dropout and batch-norm qualify only in eval mode (checked below).
_CHANNELWISE_MODULES = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.SiLU, nn.Sigmoid, nn.Tanh, nn.Hardswish, nn.Hardsigmoid, nn.GELU, nn.ELU,
    nn.Identity, nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d,
)
_EVAL_ONLY_MODULES = (nn.Dropout, nn.Dropout2d, nn.BatchNorm2d)
_CHANNELWISE_FUNCTIONS = {
    torch.relu, torch.nn.functional.relu, torch.nn.functional.relu6, torch.sigmoid, torch.nn.functional.silu,
    torch.nn.functional.adaptive_avg_pool2d, torch.nn.functional.avg_pool2d, torch.nn.functional.max_pool2d,
}
_CHANNELWISE_METHODS = {"relu", "relu_", "sigmoid"}


def _is_depthwise(module: nn.Module) -> bool:
    """A convolution that computes each output channel from the same input channel alone."""
    return (isinstance(module, nn.Conv2d) and module.groups == module.in_channels == module.out_channels
            and module.padding_mode == "zeros")


def _is_pointwise(module: nn.Module) -> bool:
    """An ungrouped 1×1 convolution of stride 1 without padding: a linear layer at every position."""
    return (isinstance(module, nn.Conv2d) and module.groups == 1 and module.kernel_size == (1, 1)
            and module.stride == (1, 1) and module.padding in ((0, 0), "valid") and module.dilation == (1, 1))


def _module_is_channelwise(module: nn.Module) -> bool:
    if type(module) in _CHANNELWISE_MODULES or _is_depthwise(module):
        return True
    if type(module) in _EVAL_ONLY_MODULES and not module.training:
        return not isinstance(module, nn.BatchNorm2d) or module.track_running_stats
    # a Sequential traced as one module (torchvision's Conv2dNormActivation, say) whose parts all are
    return isinstance(module, nn.Sequential) and len(module) > 0 and all(map(_module_is_channelwise, module))


def _is_channelwise(node: fx.Node, model: nn.Module) -> bool:
    if node.op == "call_module":
        return _module_is_channelwise(model.get_submodule(node.target))
    if node.op == "call_function":
        return node.target in _CHANNELWISE_FUNCTIONS
    return node.op == "call_method" and node.target in _CHANNELWISE_METHODS


def _is_flatten(node: fx.Node, model: nn.Module) -> bool:
    """``flatten`` from dimension 1 to the end (function, method or ``nn.Flatten``)."""
    if node.op == "call_module":
        module = model.get_submodule(node.target)
        return type(module) is nn.Flatten and module.start_dim == 1 and module.end_dim == -1
    if (node.op, node.target) in (("call_function", torch.flatten), ("call_method", "flatten")):
        arguments = dict(zip(("input", "start_dim", "end_dim"), node.args)) | node.kwargs
        return arguments.get("start_dim", 0) == 1 and arguments.get("end_dim", -1) == -1
    return False


def _is_affine(module: nn.Module | None, flat: bool) -> bool:
    """A module that is affine in its input (``f(x) = L x + b``) and keeps each row on its own:
    eval-mode batch-norm with running statistics, a pointwise convolution on maps or a linear
    layer on flat rows, eval-mode dropout, the identity."""
    if type(module) in (nn.BatchNorm1d, nn.BatchNorm2d):  # exactly: subclasses may add an activation (timm)
        return not module.training and module.track_running_stats
    if type(module) in (nn.Dropout, nn.Dropout2d):
        return not module.training
    return type(module) is nn.Identity or (type(module) is nn.Linear if flat else _is_pointwise(module))


@dataclass(frozen=True)
class LinearHead:
    """The after-part split as ``rest(linear(prefix(A)))``, ``prefix`` channel-wise then a flatten;
    ``rest`` is also ``after_tail(tail(·))`` with ``tail`` the affine modules right after the
    linear layer (batch-norm, pointwise convolutions, ...), possibly none."""

    prefix: fx.Graph           # activations -> the linear layer's input: (R, K * s), or (R, K, h, w) for a conv
    linear: nn.Linear | nn.Conv2d
    rest: fx.Graph             # the linear layer's output, then the after-part's frontier values -> output
    tail: tuple[nn.Module, ...] = ()
    after_tail: fx.Graph | None = None  # the tail's output, then the frontier values -> output

    def corrections(self, model: nn.Module, activations: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """For one row's activations (1, K, h, w): the linear layer's output on the real maps
        (out,) and, for every channel k, what zeroing map k subtracts from it (K, out)."""
        channels = activations.shape[1]
        run = fx.Interpreter(model, graph=self.prefix).run
        real, zero = run(activations), run(torch.zeros_like(activations))
        if isinstance(self.linear, nn.Conv2d):  # pointwise: (K, out, h, w), one outer product per channel
            weight = self.linear.weight[:, :, 0, 0]                                   # (out, K)
            return self.linear(real)[0], weight.t()[:, :, None, None] * (real - zero)[0][:, None]
        if real.dim() != 2 or real.shape[1] % channels:
            raise ValueError(f"the linear layer's input {tuple(real.shape)} does not split into {channels} channels")
        weight = self.linear.weight
        difference = (real - zero).view(channels, 1, -1)                             # (K, 1, s)
        columns = weight.view(weight.shape[0], channels, -1).permute(1, 2, 0)        # (K, s, out), a view
        return self.linear(real)[0], torch.bmm(difference, columns)[:, 0]

    def coalition_basis(self, model: nn.Module, activations: torch.Tensor, players: torch.Tensor,
                        budget_bytes: int = 1 << 30) -> tuple[torch.Tensor, torch.Tensor, fx.Graph]:
        r"""The coalition game of one row's maps as an affine function. For the maps of a
        coalition S kept and all others zero, the output of the linear layer — and of every
        affine module after it — is

        .. math:: z(S) = z(\emptyset) + \sum_{k \in S} \delta_k,

        because the channel-wise prefix treats each map alone and the rest is linear. Returns
        :math:`z(\emptyset)` (1, ...), the steps :math:`\delta_k` of ``players`` (K', ...), and
        the graph that turns such values into the output. The steps are carried through the
        affine tail only while they fit in ``budget_bytes``; then the graph starts after the
        tail, and one coalition costs an addition and the rest of the network instead of a pass
        through the prefix, the linear layer and the tail."""
        run = fx.Interpreter(model, graph=self.prefix).run
        empty = self.linear(run(torch.zeros_like(activations)))
        steps = self.corrections(model, activations)[1][players]
        graph = self.rest
        if self.tail:
            carried = empty
            for module in self.tail:
                carried = module(carried)
            if steps.shape[0] * carried.numel() * carried.element_size() <= budget_bytes:
                for module in self.tail:
                    zero = module(torch.zeros_like(empty))
                    empty, steps = module(empty), module(steps) - zero  # the linear part of an affine map
                graph = self.after_tail
        return empty, steps, graph


def _graph_from(nodes: list[fx.Node], first: fx.Node, skipped: set[fx.Node], placeholders: list[fx.Node]) -> fx.Graph:
    """The part of a graph after ``first``: its output becomes the new first placeholder, then
    the other placeholders, then every node not ``skipped``."""
    graph = fx.Graph()
    env = {first: graph.placeholder("linear_output")}
    env.update({p: graph.node_copy(p) for p in placeholders[1:]})
    for later in nodes:
        if later.op == "output":
            graph.output(fx.node.map_arg(later.args[0], lambda arg: env[arg]))
        elif later not in skipped and later not in env:
            env[later] = graph.node_copy(later, lambda arg: env[arg])
    return graph


def find_linear_head(model: nn.Module, graph: fx.Graph) -> LinearHead | None:
    """Split a cut after-part graph (first placeholder: the activations) as :class:`LinearHead`,
    or ``None`` when it does not begin with channel-wise operations and then a flatten and a
    linear layer, or a pointwise convolution, each the only user of the one before."""
    nodes = list(graph.nodes)
    placeholders = [n for n in nodes if n.op == "placeholder"]
    chain, node, flattened = [], placeholders[0], False
    while len(node.users) == 1:
        (node,) = node.users
        if node.all_input_nodes != [chain[-1] if chain else placeholders[0]]:
            return None
        module = model.get_submodule(node.target) if node.op == "call_module" else None
        linear = (type(module) is nn.Linear and flattened) or (_is_pointwise(module) and not flattened)
        if type(module) is nn.Linear and not flattened:
            return None
        if linear:
            prefix = fx.Graph()
            env = {placeholders[0]: prefix.placeholder("activations")}
            for step in chain:
                env[step] = prefix.node_copy(step, lambda arg: env[arg])
            prefix.output(env[chain[-1] if chain else placeholders[0]])
            skipped = {placeholders[0], *chain, node}
            tail, last = [], node
            while len(last.users) == 1:
                (following,) = last.users
                if (following.op != "call_module" or following.all_input_nodes != [last]
                        or not _is_affine(model.get_submodule(following.target), flattened)):
                    break
                tail.append(following)
                last = following
            return LinearHead(prefix, model.get_submodule(node.target), _graph_from(nodes, node, skipped, placeholders),
                              tuple(model.get_submodule(n.target) for n in tail),
                              _graph_from(nodes, last, skipped | set(tail), placeholders))
        if _is_flatten(node, model) and not flattened:
            flattened = True
        elif not _is_channelwise(node, model):
            return None
        chain.append(node)
    return None
