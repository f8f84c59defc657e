r"""Models from ONNX files, converted to PyTorch and checked against onnxruntime.

:func:`load_onnx` reads an ``.onnx`` file (the file itself is never written), makes the few
changes onnx2torch needs, converts it, and **refuses** the result unless it agrees with
onnxruntime running the original file on the same input:
:math:`\max |y_{torch} - y_{ort}| \le` ``tolerance``. The changes:

1. ``Constant`` nodes become initializers (onnx2torch reads weights from initializers only), and
   ``Identity`` nodes are bypassed (onnx2torch has no converter for opset 19's);
2. with ``input_shape`` (or, after a failed first try, the example's shape), the input's shape is
   fixed and the graph simplified by onnxsim, which folds the shape arithmetic of dynamic graphs
   (``Shape`` → ``Gather`` → ``Reshape``) that onnx2torch cannot convert. A shape given without
   its batch is fixed at batch 1 and the batch freed again afterwards: a ``Reshape`` to a constant
   shape that starts with that 1 takes ``-1`` there. The check then runs at batch 2, so a graph
   whose batch this does not free is refused rather than wrong.

The module returned is onnx2torch's ``torch.fx.GraphModule`` in eval mode: one submodule per ONNX
node, named after the node (``p2o/Conv/12``; dots become slashes), which is what ``layer=``
names. :func:`onnx_model` wraps it as a :class:`LoadedModel` for ``onnx:PATH``.

Needs ``pip install onnx onnx2torch onnxsim onnxruntime``.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..data.labels import imagenet_classes
from ..data.preprocessing import Preprocessing
from .loaded import LoadedModel

__all__ = ["ConversionError", "OnnxInput", "OnnxMismatch", "onnx_input", "load_onnx", "onnx_model", "INSTALL"]

INSTALL = "pip install onnx onnx2torch onnxsim onnxruntime"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DEFAULT_SIDE = 224  # the input side for checks and preprocessing where the file leaves it free
CHECK_BATCH = 2  # a free batch is checked at 2, so that a batch fixed inside the graph shows


class OnnxMismatch(ValueError):
    """The converted model disagrees with onnxruntime beyond the tolerance;
    ``max_abs_difference`` is what was measured."""

    def __init__(self, message: str, max_abs_difference: float):
        super().__init__(message)
        self.max_abs_difference = max_abs_difference


class ConversionError(ValueError):
    """onnx2torch could not convert a node of the graph (the message names its op)."""


@dataclass(frozen=True)
class OnnxInput:
    """The image input of an ONNX model: its ``name`` and ``shape`` (B, C, H, W), ``None`` where
    the file leaves a dimension free."""

    name: str
    shape: tuple[int | None, ...]

    @property
    def side(self) -> tuple[int, int] | None:
        """The fixed (H, W), when the file fixes both."""
        height, width = self.shape[2:]
        return (height, width) if height is not None and width is not None else None


def _packages():
    """onnx, onnx2torch and onnxruntime, or an ImportError with the pip line."""
    try:
        import onnx
        import onnx2torch
        import onnxruntime
    except ImportError as error:
        raise ImportError(f"ONNX models need {error.name}: {INSTALL}") from error
    return onnx, onnx2torch, onnxruntime


def _read(path: str | Path):
    """The ModelProto of ``path``; FileNotFoundError, or ValueError for what is not ONNX."""
    onnx, _, _ = _packages()
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"ONNX file {path} not found")
    try:
        proto = onnx.load(str(path))
    except Exception as error:  # noqa: BLE001 - protobuf and onnx errors share no base
        raise ValueError(f"{path} is not an ONNX model ({type(error).__name__}: {error})") from None
    if not proto.graph.node or not proto.graph.output:  # protobuf parses many files as an empty model
        raise ValueError(f"{path} is not an ONNX model (no graph nodes or outputs in it)")
    return proto


def _image_input(proto, path: str | Path) -> OnnxInput:
    """The one input of the graph that is not an initializer; refuses several, and non-4-D."""
    initializers = {initializer.name for initializer in proto.graph.initializer}
    inputs = [value for value in proto.graph.input if value.name not in initializers]

    def shape(value) -> tuple[int | None, ...]:
        return tuple(d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None
                     for d in value.type.tensor_type.shape.dim)

    if len(inputs) != 1:
        found = ", ".join(f"{value.name} {shape(value)}" for value in inputs)
        raise ValueError(f"{path} has {len(inputs)} inputs ({found}); camlens converts ONNX models with one "
                         "image input (B, C, H, W)")
    value = inputs[0]
    dims = shape(value)
    if len(dims) != 4:
        raise ValueError(f"the input {value.name!r} of {path} has shape {dims}; camlens explains image "
                         "models, whose one input is (B, C, H, W)")
    return OnnxInput(value.name, dims)


def onnx_input(path: str | Path) -> OnnxInput:
    """The image input of the ONNX file ``path`` (its name and declared shape)."""
    return _image_input(_read(path), path)


def _constants_as_initializers(proto) -> None:
    """Every ``Constant`` node holding a tensor becomes an initializer of the same name; an
    ``Identity`` node's readers read its input instead (unless it gives a graph output)."""
    from onnx import numpy_helper

    kept = []
    for node in proto.graph.node:
        if node.op_type == "Constant" and len(node.attribute) == 1 and node.attribute[0].name == "value":
            value = numpy_helper.to_array(node.attribute[0].t)
            proto.graph.initializer.append(numpy_helper.from_array(value, node.output[0]))
        else:
            kept.append(node)
    outputs = {value.name for value in proto.graph.output}
    bypassed = {node.output[0]: node.input[0] for node in kept
                if node.op_type == "Identity" and node.output[0] not in outputs}
    for node in kept:
        for index, name in enumerate(node.input):
            while name in bypassed:
                name = bypassed[name]
            node.input[index] = name
    del proto.graph.node[:]
    proto.graph.node.extend(node for node in kept if not (node.op_type == "Identity" and node.output[0] in bypassed))


def _fixed(proto, image: OnnxInput, shape: tuple[int, ...]):
    """The graph simplified by onnxsim at the input ``shape`` (B, C, H, W) or (C, H, W); without
    a batch it is fixed at 1 and freed afterwards (see the module docstring)."""
    try:
        import onnxsim
    except ImportError as error:
        raise ImportError(f"fixing an ONNX model's input shape needs onnxsim: {INSTALL}") from error
    from onnx import numpy_helper

    free_batch = len(shape) == 3
    full = (1, *shape) if free_batch else tuple(shape)
    if len(full) != 4:
        raise ValueError(f"input_shape must be (C, H, W) or (B, C, H, W), not {tuple(shape)}")
    compared = slice(1 if free_batch else 0, 4)
    if any(declared not in (None, wanted) for declared, wanted in zip(image.shape[compared], full[compared])):
        raise ValueError(f"input_shape {tuple(shape)} does not fit the file's input {image.name} {image.shape}")
    proto = copy.deepcopy(proto)
    for dim, size in zip(next(v for v in proto.graph.input if v.name == image.name).type.tensor_type.shape.dim, full):
        dim.Clear()
        dim.dim_value = size
    try:
        simplified, _ = onnxsim.simplify(proto)
    except Exception as error:  # noqa: BLE001 - onnxsim raises plain Exceptions and C++ errors
        raise ValueError(f"onnxsim could not simplify the model at input shape {full} "
                         f"({type(error).__name__}: {error})") from None
    _constants_as_initializers(simplified)
    if free_batch:
        shapes = {node.input[1] for node in simplified.graph.node if node.op_type == "Reshape"}
        for index, initializer in enumerate(simplified.graph.initializer):
            if initializer.name in shapes:
                target = numpy_helper.to_array(initializer)
                if target.ndim == 1 and target.size > 1 and target[0] == 1:
                    target = target.copy()
                    target[0] = 0 if -1 in target else -1  # 0: the input's first dimension, as it is
                    simplified.graph.initializer[index].CopyFrom(numpy_helper.from_array(target, initializer.name))
    return simplified


def _failing_node(error: BaseException) -> str:
    """Which ONNX node onnx2torch was converting when ``error`` was raised, read from the
    traceback of its ``convert`` (where the loop variable is ``onnx_node``)."""
    traceback = error.__traceback__
    node = None
    while traceback is not None:
        node = traceback.tb_frame.f_locals.get("onnx_node", node)
        traceback = traceback.tb_next
    if node is None:
        return "an unknown node"
    return f"op {node.operation_type} (node {node.name!r})"


def _convert(proto, path: str | Path) -> nn.Module:
    """onnx2torch's conversion, in eval mode (onnx2torch leaves batch norm in training mode)."""
    _, onnx2torch, _ = _packages()
    try:
        module = onnx2torch.convert(proto)
    except Exception as error:  # noqa: BLE001 - converters raise anything from KeyError to NotImplementedError
        raise ConversionError(f"onnx2torch cannot convert {path}: {_failing_node(error)} failed with "
                              f"{type(error).__name__}: {error}") from error
    return module.eval()


def _example(image: OnnxInput, batch: int | None) -> torch.Tensor:
    """A deterministic random input of the model's shape: free dimensions are the batch
    (:data:`CHECK_BATCH`) and the :data:`DEFAULT_SIDE`."""
    batch_size, channels, height, width = image.shape
    if channels is None:
        raise ValueError(f"the input {image.name} leaves its channels free: give an example input")
    shape = (batch or batch_size or CHECK_BATCH, channels, height or DEFAULT_SIDE, width or DEFAULT_SIDE)
    generator = torch.Generator().manual_seed(0)
    return torch.randn(shape, generator=generator)


def _outputs(result: object) -> list[torch.Tensor]:
    if isinstance(result, torch.Tensor):
        return [result]
    if isinstance(result, dict):
        return list(result.values())
    return list(result)


def _check(module: nn.Module, path: str | Path, image: OnnxInput, example: torch.Tensor, tolerance: float) -> float:
    """The largest absolute difference between ``module`` and onnxruntime running the file on
    ``example`` (a row at a time where the file fixes its batch at 1); OnnxMismatch above
    ``tolerance`` × the largest magnitude of onnxruntime's outputs, or ``tolerance`` itself where
    they stay within ±1 (logits of 20 are not held to 1e-4 absolute)."""
    _, _, onnxruntime = _packages()
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    inputs = example.detach().float().cpu()
    rows = list(inputs.split(1)) if image.shape[0] == 1 else [inputs]
    try:
        expected = [np.concatenate(parts) for parts in zip(*(session.run(None, {image.name: row.numpy()})
                                                             for row in rows))]
    except Exception as error:  # noqa: BLE001 - onnxruntime's own exception types
        raise ValueError(f"onnxruntime cannot run {path} on an input of shape {tuple(inputs.shape)} "
                         f"({type(error).__name__}: {error})") from None
    try:
        with torch.no_grad():
            found = _outputs(module(inputs))
    except RuntimeError as error:
        raise OnnxMismatch(f"the converted {path} fails on an input of shape {tuple(inputs.shape)}, which "
                           f"onnxruntime runs ({error}). A batch fixed inside the graph shows this way: give "
                           "input_shape= with the batch, (B, C, H, W)", float("inf")) from None
    if len(found) != len(expected):
        raise OnnxMismatch(f"the converted model gives {len(found)} outputs, onnxruntime {len(expected)}", float("inf"))
    difference = 0.0
    for ours, theirs in zip(found, expected):
        if tuple(ours.shape) != theirs.shape:
            raise OnnxMismatch(f"the converted model's output has shape {tuple(ours.shape)}, onnxruntime's "
                               f"{theirs.shape}", float("inf"))
        difference = max(difference, float(np.abs(ours.float().numpy() - theirs).max(initial=0.0)))
    scale = max([1.0, *(float(np.abs(theirs).max(initial=0.0)) for theirs in expected)])
    if not difference <= tolerance * scale:  # NaN fails too
        raise OnnxMismatch(
            f"the converted {path} disagrees with onnxruntime on an input of shape {tuple(inputs.shape)}: max abs "
            f"difference {difference:.3g} > tolerance {tolerance:g}" + (f" × {scale:.3g}" if scale > 1 else "") +
            ". onnx2torch may have converted an op "
            "differently; give input_shape= to fix the input's shape, or a larger tolerance if the difference is "
            "float rounding", difference)
    return difference


def load_onnx(path: str | Path, example: torch.Tensor | None = None, *, input_shape: tuple[int, ...] | None = None,
              tolerance: float = 1e-4) -> nn.Module:
    """The ONNX model in ``path`` as a PyTorch module, checked against onnxruntime.

    Args:
        path: an ``.onnx`` file with one image input (B, C, H, W); it is only read.
        example: the input the check runs on (and, when the model only converts at a fixed
            shape, that shape). Default: a deterministic random input of the file's shape, free
            dimensions at batch 2 and 224 pixels.
        input_shape: (C, H, W) — the batch kept free — or (B, C, H, W): fix the input's shape and
            simplify the graph with onnxsim before converting, for graphs whose dynamic shape
            arithmetic onnx2torch cannot convert (a transformer's reshapes, say).
        tolerance: the largest difference from onnxruntime's outputs accepted, relative to their
            largest magnitude where that exceeds 1 (absolute otherwise).

    Raises FileNotFoundError (no file), ImportError (a package missing: the pip line is
    :data:`INSTALL`), ValueError (not ONNX, several inputs, a shape that does not fit),
    :class:`ConversionError` (an op onnx2torch cannot convert, named) and :class:`OnnxMismatch`
    (the converted model disagrees with onnxruntime; the measured difference is in the message).
    """
    _packages()
    proto = _read(path)
    image = _image_input(proto, path)
    if example is not None and (example.dim() != 4 or not example.is_floating_point()):
        raise ValueError(f"example must be a float (B, C, H, W) tensor, not {example.dtype} {tuple(example.shape)}")
    if input_shape is not None:
        module = _convert(_fixed(proto, image, tuple(input_shape)), path)
        free_batch = len(input_shape) == 3
    else:
        direct = copy.deepcopy(proto)
        _constants_as_initializers(direct)
        free_batch = image.shape[0] is None
        try:
            module = _convert(direct, path)
        except ConversionError as error:
            if None not in image.shape:
                raise
            if example is None:
                raise ConversionError(f"{error}. The input's shape {image.shape} is partly free: input_shape=(C, H, W) "
                                      "fixes it and lets onnxsim fold the shape arithmetic") from error.__cause__
            # a dynamic graph onnx2torch cannot convert: at the example's shape, batch kept free
            module = _convert(_fixed(proto, image, tuple(example.shape[1:])), path)
    if example is None:
        checked = image if input_shape is None else \
            OnnxInput(image.name, (None, *input_shape) if free_batch else tuple(input_shape))
        example = _example(checked, CHECK_BATCH if free_batch else None)
    _check(module, path, image, example, tolerance)
    return module


def onnx_model(path: str, weights: str | Path | None = None, pretrained: bool = True) -> LoadedModel:
    """``onnx:PATH``: the image classifier in the ONNX file ``path`` (:func:`load_onnx`), ready to
    explain. Preprocessing: ImageNet's mean and std at the file's fixed input size (resized to
    side / 0.875, then center-cropped, as ImageNet classifiers are validated), or at 224 pixels
    where the file leaves it free (a fixed rectangle is center-cropped alike); a graph onnx2torch
    converts only at a fixed shape is fixed at that size. A file exported at a batch of 1 (no
    dynamic axes) has its batch freed (:func:`load_onnx` with ``input_shape``) and is checked at a
    batch of 2, since photos are explained in batches. The input must have 3 channels (RGB).
    Class names: ImageNet's for 1000 outputs, ``"class i"`` otherwise. The layer is ``"auto"``.
    The weights are always the file's: ``weights=`` is refused, and ``pretrained`` has no effect
    (nothing is downloaded)."""
    if weights is not None:
        raise ValueError("onnx:PATH takes its weights from the ONNX file; do not pass weights=")
    image = onnx_input(path)
    height, width = image.side if image.side is not None else (DEFAULT_SIDE, DEFAULT_SIDE)
    batch, channels = image.shape[:2]
    if channels not in (None, 3):
        raise ValueError(f"{path} takes {channels}-channel images; onnx:PATH explains models of RGB photos (3 "
                         "channels): load other models with camlens.models.from_onnx.load_onnx and camlens.wrap")
    if batch == 1:  # exported without dynamic axes: the batch freed, so that batches of photos work
        model = load_onnx(path, input_shape=(3, height, width))
        example = _example(OnnxInput(image.name, (1, 3, height, width)), None)
    else:  # checked at the preprocessing's size, also the shape a dynamic graph is fixed at if it must be
        example = _example(OnnxInput(image.name, (batch, 3, height, width)), CHECK_BATCH if batch is None else None)
        model = load_onnx(path, example)
    with torch.no_grad():
        output = _outputs(model(example[:1]))[0]
    classes = output.shape[1] if output.dim() >= 2 else 1
    names = imagenet_classes() if classes == 1000 else tuple(f"class {i}" for i in range(classes))
    preprocessing = Preprocessing(round(height / 0.875), height, IMAGENET_MEAN, IMAGENET_STD,
                                  width=None if width == height else width)
    return LoadedModel(f"onnx:{path}", model, preprocessing, tuple(names))
