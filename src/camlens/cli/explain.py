"""``camlens explain``: overlays per method and class, a grid and the raw maps per photo, pages
of thumbnails, and a manifest for the run.

Photos stream: they are read by background threads a few batches ahead, explained a batch at a
time, and their files and manifest lines written as each batch ends, so that memory stays bounded
whatever the folder's size and a killed run can be resumed (``--resume``)."""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from datetime import datetime, timezone
from pathlib import Path

import torch
from tqdm import tqdm

from .. import __version__
from ..data import DISPLAY_MAX_SIDE, Photo, read_jsonl, stream_photos
from ..engine.layers import LayerError, LayerSpec
from ..explain import explain
from ..explanation import Explanation
from ..methods import METHODS
from ..models import LoadedModel
from ..report import SAVE_OPTIONS, explain_report
from ..report.overview import PER_PAGE, OverviewPages
from ..targets import EmptyRegion, NoMatchingDetection
from . import on_ray
from .common import (
    EXIT_INPUT_FAILED,
    EXIT_OK,
    UsageError,
    add_device_option,
    add_engine_options,
    add_model_options,
    check_engine,
    images_named,
    load_model,
    method_names,
    parse_device,
    subcommand,
    usage_error,
    versions,
)
from .manifest import RunManifest
from .photo_outputs import overview_row, overview_row_from_files, write_photo
from .queries import BoxOutsideCrop, build_query

__all__ = ["add_parser", "run", "DEFAULT_METHODS"]

DEFAULT_METHODS = "gradcam,gradcampp,xgradcam,layercam,guided_gradcam"


def _output_folders(named: list[tuple[Path, str]], done: dict[str, dict] | None = None) -> dict[Path, str]:
    """Each photo's folder under ``--out``: its name relative to where it was found, the input
    tree mirrored, with the extension kept in the last part (``sub/a.jpg`` → ``sub/a_jpg``), so
    that ``a.jpg``, ``a.png`` and ``sub/a.jpg`` never share a folder. Two inputs with the same
    name (from two folders) get ``_2``, ``_3``, … and a note, never each other's files. The
    folders of photos a resumed run already explained (``done``: file → manifest record) keep
    theirs, and no new photo gets one of them."""
    folders: dict[Path, str] = {}
    recorded = {file: str(Path(record["outputs"][-1]).parent) for file, record in (done or {}).items()}
    taken: set[str] = set(recorded.values())
    for path, name in named:
        if str(path) in recorded:
            folders[path] = recorded[str(path)]
            continue
        parts = [part for part in Path(name).parts if part not in ("", ".", "..", "/")] or [path.name]
        parts[-1] = parts[-1].replace(".", "_")
        folder = base = "/".join(parts)
        count = 1
        while folder in taken:
            count += 1
            folder = f"{base}_{count}"
        if count > 1:
            print(f"camlens: note: {path} writes to {folder}/, as another input is also named {name}", file=sys.stderr)
        taken.add(folder)
        folders[path] = folder
    return folders


def _print_predictions(stem: str, predicted: list[dict]) -> None:
    cells = "  ".join(f"{i + 1}. {c['name']} ({c['index']}) {c['probability']:.3f}" for i, c in enumerate(predicted))
    print(f"{stem:24s} {cells}")


def _prepare_output(out: Path, resume: bool, overwrite: bool) -> bool:
    """Check ``--out`` before any work: it must be a folder (or not exist yet), and an earlier
    run in it is continued (``--resume``), replaced (``--overwrite``: its files are removed), or
    a usage error — never overwritten silently. Creates it; returns whether it was created."""
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file, not a folder")
    earlier, summary = out / "manifest.jsonl", out / "manifest.json"
    if resume and summary.exists() and not earlier.exists():
        raise UsageError(f"{out}/ holds a run of an earlier camlens without manifest.jsonl: it cannot be resumed; "
                         "--overwrite replaces it, or give another --out")
    if (earlier.exists() or summary.exists()) and not resume:
        if not overwrite:
            raise UsageError(f"{out}/ holds an earlier run ({(earlier if earlier.exists() else summary).name}): "
                             "--resume continues it, --overwrite replaces it, or give another --out")
        images = [line["image"] for line in read_jsonl(earlier) if "image" in line]
        if summary.exists() and not images:
            try:
                images = json.loads(summary.read_text(encoding="utf-8")).get("images", [])
            except (OSError, ValueError):
                images = []
        for image in images:
            for relative in image.get("outputs", []):
                (out / relative).unlink(missing_ok=True)
        for stale in [earlier, summary, out / "overview.png", *out.glob("overview-[0-9][0-9][0-9].png")]:
            stale.unlink(missing_ok=True)
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    return created


def _preflight(query, loaded: LoadedModel, device, methods, model_name: str) -> None:
    """Explain a blank image once, so that a layer that cannot be explained (not there, 1×1
    maps) is a usage error before an ``--overwrite`` removes the earlier run."""
    height, width = loaded.preprocessing.size
    blank = torch.zeros(1, 3, height, width, dtype=getattr(torch, loaded.preprocessing.dtype), device=device)
    try:
        inputs, target = query.build(blank, [(width, height)])
        explain(query.model.to(device), inputs, layer=query.layer, methods=methods[:1], target=target)
    except LayerError as error:
        raise usage_error(error, model_name) from None
    except (ValueError, UsageError):  # what a blank image cannot show (no detection there): the run will tell
        pass


def run(args: argparse.Namespace) -> int:
    check_engine(args)
    if args.resume and args.overwrite:
        raise UsageError("--resume and --overwrite cannot be combined: one continues the run in --out, the other "
                         "replaces it")
    if args.engine == "ray":
        return on_ray.explain(args)
    loaded = load_model(args.model, args.weights, args.fit)
    methods = method_names(args.methods)
    device = parse_device(args.device)
    query = build_query(args, loaded, device)
    named = images_named(args.images)
    out = Path(args.out)
    max_side = args.max_side or None
    settings = {"model": loaded.name, "weights": str(args.weights) if args.weights else None, "layer": query.layer,
                "fit": loaded.preprocessing.fit, "methods": list(methods), **query.description, "boxes": args.boxes, "max_side": max_side,
                "format": args.format}
    info = {"camlens": __version__, "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "command": ["camlens", *sys.argv[1:]], "device": str(device), "preprocessing": _describe(loaded),
            "versions": versions()}
    if args.overwrite:  # check what only explaining would reveal before anything is removed
        _preflight(query, loaded, device, methods, args.model)
    created = _prepare_output(out, args.resume, args.overwrite)
    try:
        manifest = RunManifest(out, settings, info, resume=args.resume)
    except UsageError:
        if created:
            out.rmdir()
        raise
    try:
        return _explain_all(args, loaded, query, query.model.to(device), device, methods, named, out, manifest)
    except UsageError:  # found while explaining (a layer that cannot be explained, say): leave no empty run
        if created and not manifest.done:
            manifest.abandon()
            shutil.rmtree(out, ignore_errors=True)
        raise


def _explain_all(args, loaded: LoadedModel, query, model, device, methods, named, out: Path,
                 manifest: RunManifest) -> int:
    layer: LayerSpec = query.layer
    max_side = args.max_side or None
    stems = _output_folders(named, manifest.done)
    todo = [path for path, _ in named if str(path) not in manifest.done]
    pages = _resumed_pages(out, manifest, methods)
    missed: list[str] = []  # photos where no detection matched a --box
    resolved_layer = next((r["layer"] for r in manifest.done.values() if "layer" in r), None)
    with tqdm(total=len(todo), desc="explaining", unit="photo", file=sys.stderr, disable=len(todo) <= 4) as progress:
        readers = 2 if args.workers is None else args.workers
        for batch in stream_photos(todo, loaded.preprocessing, args.batch_size, readers, max_side):
            for failure in batch.failures:
                manifest.add_failure(str(failure.path), failure.reason)
                tqdm.write(f"camlens: skipped {failure}", file=sys.stderr)
            for photos, explanation in _explain_chunk(model, query, batch.photos, batch.tensor, device, layer, methods,
                                                      manifest, missed, args.model):
                # "auto" is resolved once, on the first batch, not probed again for every batch
                resolved_layer = layer = explanation.layer
                for offset, photo in enumerate(photos):
                    rows = (explanation.image_index == offset).nonzero().flatten().tolist()
                    predicted, probabilities = loaded.predictions(explanation.outputs, offset)
                    record, pictures = write_photo(out, stems[photo.path], photo, explanation, rows, predicted,
                                                   probabilities, loaded, args.boxes, args.format)
                    record["layer"] = explanation.layer
                    manifest.add_image(record)
                    pages.add(pictures, *overview_row(record, methods))
                    _print_predictions(stems[photo.path], predicted)
            progress.update(len(batch.photos) + len(batch.failures))
    pages.flush()
    if not manifest.done:  # nothing explained: every photo failed, or every one missed its --box
        manifest.close({"layer": resolved_layer, "overview": pages.written})
        if missed:  # every photo read missed its --box: the boxes, not the photos, are wrong
            raise UsageError(missed[-1])
        print("camlens: error: no image could be read", file=sys.stderr)
        return EXIT_INPUT_FAILED
    written = manifest.close({"layer": resolved_layer, "overview": _page_names(pages)})
    report = explain_report(out, json.loads(written.read_text(encoding="utf-8")),
                            {m: METHODS[m].title for m in methods})
    print(f"wrote {len(manifest.done)} image(s) to {out}/ ({report.name} to look at them, {written.name} lists every "
          f"file; overview in {len(_page_names(pages))} page(s))")
    if manifest.failures:
        files = [file for file, _ in manifest.failures]
        print(f"camlens: {len(files)} input(s) failed: {', '.join(files[:10])}{' …' if len(files) > 10 else ''}",
              file=sys.stderr)
        return EXIT_INPUT_FAILED
    return EXIT_OK


def _describe(loaded: LoadedModel) -> dict | str:
    return vars(loaded.preprocessing) if hasattr(loaded.preprocessing, "__dict__") else repr(loaded.preprocessing)


def _page_names(pages: OverviewPages) -> list[str]:
    return [OverviewPages.name(page) for page in range(1, pages.page)]


def _resumed_pages(out: Path, manifest: RunManifest, methods: tuple[str, ...]) -> OverviewPages:
    """The overview pages going on after the photos already explained: finished pages stay as
    they are, and the page a killed run left unwritten is refilled from its photos' files."""
    done = list(manifest.done.values())
    full = len(done) // PER_PAGE
    for page in range(1, full + 1):  # a full page the killed run had no time to write
        if not (out / OverviewPages.name(page)).exists():
            redo = OverviewPages(out, first_page=page)
            for record in done[(page - 1) * PER_PAGE: page * PER_PAGE]:
                redo.add(overview_row_from_files(out, record, methods, redo.thumbnail), *overview_row(record, methods))
    pages = OverviewPages(out, first_page=full + 1)
    for record in done[full * PER_PAGE:]:
        pages.add(overview_row_from_files(out, record, methods, pages.thumbnail), *overview_row(record, methods))
    return pages


def _explain_chunk(model, query, photos: list[Photo], tensor: torch.Tensor, device, layer, methods,
                   manifest: RunManifest, missed: list[str], model_name: str) -> list[tuple[list[Photo], Explanation]]:
    """The explanation of a chunk of photos, as (photos, explanation) pairs. A photo where no
    detection matches a ``--box``, or whose ``--box`` holds no pixel of a score map, is recorded
    as failed and the others go on: the chunk is then explained photo by photo. Other errors are
    usage errors."""
    if not photos:
        return []
    try:
        inputs, target = query.build(tensor.to(device), [photo.size for photo in photos])
        return [(photos, explain(model, inputs, layer=layer, methods=methods, target=target))]
    except (NoMatchingDetection, BoxOutsideCrop, EmptyRegion) as error:
        if len(photos) > 1:
            return [pair for i in range(len(photos))
                    for pair in _explain_chunk(model, query, photos[i:i + 1], tensor[i:i + 1], device, layer, methods,
                                               manifest, missed, model_name)]
        manifest.add_failure(str(photos[0].path), str(error))
        missed.append(str(error))
        tqdm.write(f"camlens: skipped {photos[0].path}: {error}", file=sys.stderr)
        return []
    except (ValueError, TypeError) as error:
        raise usage_error(error, model_name) from error


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = subcommand(
        commands, "explain", "explain images: overlays, grids, raw maps and a manifest",
        "Explain images with CAM methods. For each image, writes one overlay per method and class, "
        "a grid, the raw maps (maps.pt) and a manifest.json for the whole run.",
    )
    parser.add_argument("images", nargs="+",
                        help="image files, folders (searched recursively), patterns such as 'photos/**/*.jpg', "
                             "or CSV files with an image column (file, filename, image or path)")
    add_model_options(parser, "dotted layer name; 'auto' = the model's recommended layer, else the last spatial layer (default)")
    parser.add_argument("--methods", default=DEFAULT_METHODS, help=f"comma-separated, from: {', '.join(METHODS)} (default: %(default)s)")
    parser.add_argument("--target", action="append", metavar="TARGET",
                        help="top1 (default), topK, a class index or a class name; repeat for several classes")
    parser.add_argument("--caption", metavar="TEXT", help="captioning models: one map per word of this caption")
    parser.add_argument("--question", metavar="TEXT", help="question-answering models: explain the answer to it")
    parser.add_argument("--box", action="append", metavar="X0,Y0,X1,Y1:LABEL",
                        help="detectors: explain the detection of this box (photo pixels); repeat for several. "
                             "Models of score maps (face, text detectors): the map LABEL summed inside each box")
    parser.add_argument("--reference", metavar="IMAGE",
                        help="models with an embedding: why each photo matches this one (cosine similarity)")
    parser.add_argument("--out", default="camlens-out", help="output folder (default: %(default)s)")
    add_device_option(parser)
    parser.add_argument("--batch-size", type=int, default=8, help="images per forward pass (default: %(default)s)")
    parser.add_argument("--workers", type=int,
                        help="threads that read and preprocess photos ahead of the model; 0 reads in the main thread "
                             "(default: 2); with --engine ray, the actors explaining (default: 1)")
    parser.add_argument("--max-side", type=int, default=DISPLAY_MAX_SIDE, metavar="PX",
                        help="longest side of the pictures written; larger photos are scaled down, 0 keeps their "
                             "own size (default: %(default)s)")
    parser.add_argument("--format", choices=sorted(SAVE_OPTIONS), default="jpg",
                        help="file format of the overlays and grids: jpg (fast, small) or png (lossless) "
                             "(default: %(default)s)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an earlier run in --out (its files are removed first); without it, or "
                             "--resume, an earlier run is never overwritten")
    parser.add_argument("--resume", action="store_true",
                        help="go on with the run in --out: skip the photos its manifest.jsonl lists as explained, "
                             "retry those that failed (the settings must be the same)")
    parser.add_argument("--boxes", action="store_true",
                        help="draw on each overlay the box around the map's largest region above 15%% of its max")
    add_engine_options(parser, workers=False)
    parser.set_defaults(run=run)
