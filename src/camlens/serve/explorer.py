"""The explorer's state behind the web API: the allowed models, loaded once each and explaining
one request at a time behind a bounded queue, and the results kept for download.

Nothing here knows HTTP: requests that cannot be served raise :class:`RequestError` with the
status the API answers (413, 415, 422, 404, 503) and a message for people."""

from __future__ import annotations

import io
import math
import secrets
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import torch
from PIL import Image

from ..data import ImageReadError, Photo, decode_image, read_image
from ..engine.modelstate import resolve_device
from ..explain import explain
from ..explanation import Explanation
from ..methods import METHODS, check_method_names
from ..models import ZOO, LayerInfo, LoadedModel, load
from ..models.loaded import row_probability
from ..report import overlay, render_attribution
from ..targets import Target, TopK
from .settings import EXPLORER_TASKS, ModelChoice, ServeSettings

__all__ = ["Explorer", "ExplainRequest", "ExplainResult", "RequestError", "ModelSlot"]

T = TypeVar("T")
_STATUS_OF_IMAGE_ERROR = {"too_large": 413, "not_image": 415, "missing": 422, "corrupt": 422}


class RequestError(Exception):
    """A request the explorer refuses: ``status`` is the HTTP status the API answers, the message
    says why in words a person can act on."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class ExplainRequest:
    """What to explain: a model by its name in the server's list, a layer from that model's
    candidates (``"auto"``: its recommended layer), method names, and the classes — ``topK``
    alone, or class names and indices (see :meth:`~camlens.models.LoadedModel.class_target`)."""

    model: str
    layer: str = "auto"
    methods: tuple[str, ...] = ("gradcam",)
    target: tuple[str, ...] = ("top1",)


class ModelSlot:
    """One allowed model: loaded on first use (once, whichever request comes first; listing its
    layers or classes loads it too), its layers listed on the CPU before it moves to the device,
    and its explanations — decoding the photo, explaining it — made by one thread of its own, a
    request at a time.

    One thread, not a lock shared by the server's request threads: a model's hooks and autograd
    state are never shared, and the large buffers of a forward and backward pass are always
    allocated by the same thread, so that the C allocator does not keep a copy of them per
    request thread (with fifty request threads it kept 500 MB more). At most ``queue`` jobs wait
    or run; the next is refused (503) rather than queued without bound."""

    def __init__(self, choice: ModelChoice, device: torch.device, queue: int):
        self.choice = choice
        self.device = device
        self.queue = queue
        self._loaded: LoadedModel | None = None
        self._layers: tuple[list[LayerInfo], str] | None = None
        self._auto: str | None = None  # the layer "auto" resolved to on the first explanation
        self._loading = threading.Lock()
        self._counting = threading.Lock()
        self._inside = 0
        self._worker = ThreadPoolExecutor(1, thread_name_prefix=f"camlens-{choice.name}")

    def loaded(self) -> LoadedModel:
        with self._loading:
            if self._loaded is None:
                try:
                    loaded = load(self.choice.name, weights=self.choice.weights)
                except (ValueError, ImportError, OSError, RuntimeError) as error:
                    raise RequestError(503, f"model {self.choice.name} cannot be loaded here: {error}") from None
                if loaded.task not in EXPLORER_TASKS:
                    raise RequestError(422, f"{loaded.name} is a {loaded.task} model; the explorer explains classes "
                                            "(camlens explain has --caption, --question and --box)")
                self._layers = loaded.layers()
                loaded.model.to(self.device)  # in place
                self._loaded = loaded
            return self._loaded

    def layers(self) -> tuple[list[LayerInfo], str]:
        """The layers a CAM can be made at, and the layer ``"auto"`` names."""
        loaded = self.loaded()
        found, auto = self._layers
        recommended = auto if loaded.layer == "auto" else loaded.layer
        return [layer for layer in found if layer.explainable], recommended

    @property
    def is_loaded(self) -> bool:
        return self._loaded is not None

    def submit(self, job: Callable[[], T]) -> Future[T]:
        """Run ``job`` on this model's thread, after the jobs before it; 503 when ``queue`` jobs
        already wait or run."""
        with self._counting:
            if self._inside >= self.queue:
                raise RequestError(503, f"{self.choice.name} has {self._inside} requests waiting or running, the most "
                                        "this server allows; try again in a moment")
            self._inside += 1
        try:
            future = self._worker.submit(job)
        except RuntimeError:  # the server is shutting down
            self._left()
            raise RequestError(503, "the server is shutting down") from None
        future.add_done_callback(lambda _: self._left())  # also when a waiting job is cancelled
        return future

    def _left(self) -> None:
        with self._counting:
            self._inside -= 1

    def explain(self, tensor: torch.Tensor, layer: str, methods: tuple[str, ...], target: Target) -> Explanation:
        """One image's explanation (``tensor``: its preprocessed (C, H, W) input); call it from a
        job on this model's thread. The layer ``"auto"`` is resolved on the first request and
        remembered, as ``camlens explain`` does for a run, rather than probed again each time."""
        loaded = self.loaded()
        chosen = layer if layer != "auto" else (self._auto or loaded.layer)
        try:
            explanation = explain(loaded.model, loaded.inputs(tensor[None].to(self.device)), layer=chosen,
                                  methods=methods, target=target)
        except (ValueError, TypeError) as error:  # a method this model cannot do (CAM without a linear head)
            raise RequestError(422, str(error)) from None
        if layer == "auto":
            self._auto = explanation.layer
        return explanation

    def close(self) -> None:
        """Stop taking jobs; the waiting ones are cancelled, the running one finishes."""
        self._worker.shutdown(wait=False, cancel_futures=True)


@dataclass
class ExplainResult:
    """One explanation kept for the page and for download: the photo as shown (JPEG), the rows'
    classes, and per method the maps (layer and input resolution) and input attributions."""

    id: str
    model: str
    layer: str
    methods: tuple[str, ...]
    target: tuple[str, ...]
    photo_name: str
    photo_size: tuple[int, int]
    display_jpeg: bytes
    display_box: tuple[float, float, float, float]
    predictions: list[dict]
    rows: list[dict]
    saved: dict = field(repr=False)
    input_maps: dict[str, torch.Tensor] = field(repr=False)

    @property
    def nbytes(self) -> int:
        tensors = [*self.input_maps.values(), *self.saved["maps"].values(), *self.saved["layer_maps"].values(),
                   *self.saved["weights"].values()]
        return len(self.display_jpeg) + sum(t.numel() * t.element_size() for t in tensors)

    def photo(self) -> Image.Image:
        with Image.open(io.BytesIO(self.display_jpeg)) as image:
            return image.convert("RGB")

    def picture(self, row: int, method: str, alpha: float = 0.5) -> Image.Image:
        """Row ``row``'s picture for ``method``: the map over the photo at opacity ``alpha``
        (1: the colours alone where the model looked; :func:`~camlens.report.overlay`), or an
        input method's attribution."""
        if method not in self.methods or not 0 <= row < len(self.rows):
            raise RequestError(404, f"this result has no picture for row {row} and method {method!r}")
        if not 0 <= alpha <= 1:
            raise RequestError(422, f"alpha must lie in [0, 1], not {alpha}")
        photo = self.photo()
        if method in self.input_maps:
            return render_attribution(self.input_maps[method][row].float(), size=photo.size, box=self.display_box)
        return overlay(photo, self.saved["maps"][method][row], box=self.display_box, alpha=alpha, max_side=None)

    def maps_file(self) -> bytes:
        """``maps.pt``, as ``camlens explain`` writes it."""
        buffer = io.BytesIO()
        torch.save(self.saved, buffer)
        return buffer.getvalue()

    def document(self) -> dict:
        """The result as the API returns it: the run, the top-5, and per explained class its
        score, its maps at the layer's resolution (normalized by nothing: the method's own
        values after its ReLU) and the addresses of its pictures."""
        base = f"/api/results/{self.id}"
        rows = []
        for index, row in enumerate(self.rows):
            pictures = {}
            for method in self.methods:
                kind = "attribution" if method in self.input_maps else "map"
                address = f"{base}/rows/{index}/{method}"
                pictures[method] = {"kind": kind, "title": METHODS[method].title, "png": f"{address}.png",
                                    "heat": f"{address}.jpg?alpha=1" if kind == "map" else f"{address}.jpg"}
            layer_maps = {m: [[round(float(v), 7) for v in line] for line in maps[index].tolist()]
                          for m, maps in self.saved["layer_maps"].items() if m in self.methods}
            rows.append({**row, "pictures": pictures, "layer_maps": layer_maps})
        return {
            "id": self.id, "model": self.model, "layer": self.layer, "target": list(self.target),
            "methods": [{"name": m, "title": METHODS[m].title} for m in self.methods],
            "photo": {"name": self.photo_name, "size": list(self.photo_size), "url": f"{base}/photo.jpg",
                      "display_box": [round(v, 2) for v in self.display_box]},
            "predictions": self.predictions, "rows": rows,
            "downloads": {"maps.pt": f"{base}/maps.pt", "json": f"{base}.json"},
        }


class ResultStore:
    """The latest results, within ``budget`` bytes (the oldest go first; the newest always stays),
    shared by the server's threads."""

    def __init__(self, budget: int):
        self.budget = budget
        self._kept: OrderedDict[str, ExplainResult] = OrderedDict()
        self._lock = threading.Lock()

    def add(self, result: ExplainResult) -> None:
        with self._lock:
            self._kept[result.id] = result
            total = sum(kept.nbytes for kept in self._kept.values())
            while total > self.budget and len(self._kept) > 1:
                total -= self._kept.popitem(last=False)[1].nbytes

    def get(self, key: str) -> ExplainResult:
        with self._lock:
            found = self._kept.get(key)
        if found is None:
            raise RequestError(404, "this result is no longer kept (the server keeps the latest ones): explain again")
        return found


class Explorer:
    """The server's state: its :class:`ModelSlot` per allowed model, its samples (by name) and
    the kept results."""

    def __init__(self, settings: ServeSettings):
        self.settings = settings
        device = resolve_device(settings.device)
        self.slots = {choice.name: ModelSlot(choice, device, settings.queue) for choice in settings.models}
        self.samples = {}
        for path in settings.samples:
            self.samples.setdefault(path.name, path)
        self.results = ResultStore(settings.kept_bytes)

    def slot(self, name: str, status: int = 422) -> ModelSlot:
        if name not in self.slots:
            raise RequestError(status, f"unknown model {name!r}; this server offers {', '.join(self.slots)}")
        return self.slots[name]

    def models(self) -> list[dict]:
        """The allowed models, as the page lists them (none is loaded to say this)."""
        found = []
        for name, slot in self.slots.items():
            entry = ZOO.get(name)
            found.append({"name": name, "task": entry.task if entry else "classification",
                          "description": entry.description if entry else name, "loaded": slot.is_loaded})
        return found

    def sample(self, name: str, status: int = 422) -> Image.Image:
        """A sample photo by its name in the list (``status`` for a name not in it)."""
        if name not in self.samples:
            raise RequestError(status, f"unknown sample {name!r}; the samples are {', '.join(self.samples) or 'none'}")
        try:
            return read_image(self.samples[name], self.settings.max_pixels)
        except ImageReadError as error:
            raise RequestError(500, f"sample {name} cannot be read: {error.reason}") from None

    def decode(self, data: bytes, name: str) -> Image.Image:
        """An upload's photo, decoded with the allowed formats only, within the pixel limit."""
        try:
            return decode_image(data, name, self.settings.max_pixels, self.settings.formats)
        except ImageReadError as error:
            raise RequestError(_STATUS_OF_IMAGE_ERROR[error.kind], str(error)) from None

    def check(self, request: ExplainRequest) -> tuple[ModelSlot, tuple[str, ...], Target]:
        """Everything about a request that can be refused before its photo is explained: the
        model's slot, the methods and the target."""
        slot = self.slot(request.model)
        try:
            methods = tuple(dict.fromkeys(check_method_names(list(request.methods))))
        except ValueError as error:
            raise RequestError(422, str(error)) from None
        layers, _ = slot.layers()
        if request.layer != "auto" and request.layer not in {layer.name for layer in layers}:
            raise RequestError(422, f"layer {request.layer!r} is not one of {request.model}'s candidate layers "
                                    f"(GET /api/models/{request.model}/layers lists them)")
        try:
            target = slot.loaded().class_target(list(request.target))
        except ValueError as error:
            raise RequestError(422, f"target: {error}") from None
        rows = target.k if isinstance(target, TopK) else len(target.classes)
        if rows > self.settings.max_rows:
            raise RequestError(422, f"target: {rows} classes, more than the {self.settings.max_rows} this server "
                                    "explains in one request")
        return slot, methods, target

    def submit(self, request: ExplainRequest, upload: bytes | None = None, name: str = "upload",
               sample: str | None = None) -> Future[ExplainResult]:
        """Explain an uploaded photo (its bytes, ``name`` for labels) or a sample, on the model's
        own thread (see :class:`ModelSlot`): checked, decoded and explained there, after the
        requests before it. 503 at once when the model's queue is full."""
        if (upload is None) == (sample is None):
            raise RequestError(422, "send a photo as the multipart field 'file', or name a sample in 'sample' "
                                    "(one of the two)")

        def job() -> ExplainResult:
            checked = self.check(request)  # refusals that cost nothing come before the photo is decoded
            image = self.decode(upload, name) if upload is not None else self.sample(sample)
            return self._explain(checked, image, name if upload is not None else sample, request)

        return self.slot(request.model).submit(job)

    def _explain(self, checked: tuple[ModelSlot, tuple[str, ...], Target], image: Image.Image, name: str,
                 request: ExplainRequest) -> ExplainResult:
        """Explain one photo as the checked ``request`` asks (on the model's thread, see
        :meth:`submit`); the result is kept for its pictures and files."""
        slot, methods, target = checked
        loaded = slot.loaded()
        tensor, photo = Photo.of(image, Path(name), loaded.preprocessing, self.settings.display_side)
        explanation = slot.explain(tensor, request.layer, methods, target)
        predicted, probabilities = loaded.predictions(explanation.outputs, 0)
        rows = []
        for row in range(len(explanation)):
            cls = int(explanation.targets[row])
            rows.append({"index": cls, "name": loaded.class_names[cls] if cls >= 0 else "target",
                         "score": float(explanation.scores[row]),
                         "probability": _finite(row_probability(probabilities, cls))})
        display = io.BytesIO()
        photo.image.save(display, format="JPEG", quality=92)
        result = ExplainResult(
            id=secrets.token_urlsafe(12), model=request.model, layer=explanation.layer, methods=methods,
            target=tuple(request.target), photo_name=name, photo_size=photo.size, display_jpeg=display.getvalue(),
            display_box=photo.display_box, predictions=predicted, rows=rows, saved=explanation.saved(),
            input_maps={m: v.cpu().half() for m, v in explanation.input_maps.items()})
        self.results.add(result)
        return result

    def close(self) -> None:
        for slot in self.slots.values():
            slot.close()

    def classes(self, model: str, query: str = "", limit: int = 20) -> list[dict]:
        """The model's classes whose name holds ``query`` (case-insensitive), names that start with
        it first; its index also finds a class."""
        names = self.slot(model, 404).loaded().class_names
        wanted = query.strip().lower()
        if not wanted:
            found = list(range(len(names)))
        else:
            found = sorted((i for i, n in enumerate(names) if wanted in n.lower() or wanted == str(i)),
                           key=lambda i: (not names[i].lower().startswith(wanted), names[i].lower()))
        return [{"index": i, "name": names[i]} for i in found[:limit]]


def _finite(value: float) -> float | None:
    """JSON has no NaN: a row without a probability (a target that names no class) has none."""
    return None if math.isnan(value) else value


def sample_paths(folders: Sequence[Path]) -> tuple[Path, ...]:
    """The photos in ``folders`` (not searched recursively), as the page offers them."""
    from ..data import IMAGE_SUFFIXES

    return tuple(sorted(path for folder in folders for path in Path(folder).iterdir()
                        if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file()))
