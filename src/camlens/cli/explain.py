"""``camlens explain``: overlays per method and class, a grid and the raw maps per photo, pages
of thumbnails, and a manifest for the run.

Photos stream: they are read by background threads a few batches ahead, explained a batch at a
time, and their files and manifest lines written as each batch ends, so that memory stays bounded
whatever the folder's size and a killed run can be resumed (``--resume``)."""

from __future__ import annotations

import argparse
import sys
from datetime import datetime, timezone
from pathlib import Path

import torch
from tqdm import tqdm

from .. import __version__
from ..data import DISPLAY_MAX_SIDE, IMAGE_SUFFIXES, Photo, image_paths, stream_photos
from ..engine.layers import LayerSpec
from ..explain import explain
from ..explanation import Explanation
from ..methods import METHODS
from ..models import LoadedModel
from ..report.overview import PER_PAGE, OverviewPages
from ..targets import NoMatchingDetection
from .common import (
    EXIT_INPUT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    UsageError,
    add_device_option,
    add_model_options,
    load_model,
    method_names,
    parse_device,
    subcommand,
    versions,
)
from .manifest import RunManifest
from .photo_outputs import SAVE_OPTIONS, overview_row, overview_row_from_files, write_photo
from .queries import build_query, predictions

__all__ = ["add_parser", "run", "DEFAULT_METHODS"]

DEFAULT_METHODS = "gradcam,gradcampp,xgradcam,layercam,guided_gradcam"


def _unique_stems(paths: list[Path]) -> list[str]:
    seen: dict[str, int] = {}
    stems = []
    for path in paths:
        count = seen.get(path.stem, 0)
        seen[path.stem] = count + 1
        stems.append(path.stem if count == 0 else f"{path.stem}_{count}")
    return stems


def _print_predictions(stem: str, predicted: list[dict]) -> None:
    cells = "  ".join(f"{i + 1}. {c['name']} ({c['index']}) {c['probability']:.3f}" for i, c in enumerate(predicted))
    print(f"{stem:24s} {cells}")


def _fresh_start(out: Path) -> None:
    """Remove what an earlier run's summary files would leave stale (its photos' folders are
    overwritten photo by photo)."""
    for stale in [out / "manifest.json", out / "overview.png", *out.glob("overview-[0-9][0-9][0-9].png")]:
        stale.unlink(missing_ok=True)


def run(args: argparse.Namespace) -> int:
    loaded = load_model(args.model, args.weights)
    methods = method_names(args.methods)
    device = parse_device(args.device)
    query = build_query(args, loaded, device)
    layer: LayerSpec = query.layer
    model = query.model.to(device)
    paths = image_paths(args.images)
    if not paths:
        raise UsageError(f"no image files in {', '.join(args.images)} (looked for {', '.join(sorted(IMAGE_SUFFIXES))})")

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    max_side = args.max_side or None
    settings = {"model": loaded.name, "weights": str(args.weights) if args.weights else None, "layer": layer,
                "methods": list(methods), **query.description, "boxes": args.boxes, "max_side": max_side, "format": args.format}
    info = {"camlens": __version__, "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "command": ["camlens", *sys.argv[1:]], "device": str(device), "preprocessing": _describe(loaded),
            "versions": versions()}
    if not args.resume:
        _fresh_start(out)
    manifest = RunManifest(out, settings, info, resume=args.resume)
    stems = dict(zip(paths, _unique_stems(paths)))  # over every input, so that a resumed run names alike
    todo = [path for path in paths if str(path) not in manifest.done]
    pages = _resumed_pages(out, manifest, methods)

    missed: list[str] = []  # photos where no detection matched a --box
    resolved_layer = next((r["layer"] for r in manifest.done.values() if "layer" in r), None)
    with tqdm(total=len(todo), desc="explaining", unit="photo", file=sys.stderr, disable=len(todo) <= 4) as progress:
        for batch in stream_photos(todo, loaded.preprocessing, args.batch_size, args.workers, max_side):
            for failure in batch.failures:
                manifest.add_failure(str(failure.path), failure.reason)
                tqdm.write(f"camlens: skipped {failure}", file=sys.stderr)
            for photos, explanation in _explain_chunk(model, query, batch.photos, batch.tensor, device, layer, methods,
                                                      manifest, missed):
                resolved_layer = explanation.layer
                for offset, photo in enumerate(photos):
                    rows = (explanation.image_index == offset).nonzero().flatten().tolist()
                    predicted, probabilities = predictions(loaded, explanation.outputs, offset)
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
    print(f"wrote {len(manifest.done)} image(s) to {out}/ ({written.name} lists every file; "
          f"overview in {len(_page_names(pages))} page(s))")
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
    pages = OverviewPages(out, first_page=len(done) // PER_PAGE + 1)
    for record in done[len(done) - len(done) % PER_PAGE:]:
        pictures = overview_row_from_files(out, record, methods, pages.thumbnail)
        pages.add(pictures, *overview_row(record, methods))
    return pages


def _explain_chunk(model, query, photos: list[Photo], tensor: torch.Tensor, device, layer, methods,
                   manifest: RunManifest, missed: list[str]) -> list[tuple[list[Photo], Explanation]]:
    """The explanation of a chunk of photos, as (photos, explanation) pairs. A photo where no
    detection matches a ``--box`` is recorded as failed and the others go on: the chunk is then
    explained photo by photo. Other errors are usage errors."""
    if not photos:
        return []
    try:
        inputs, target = query.build(tensor.to(device), [photo.size for photo in photos])
        return [(photos, explain(model, inputs, layer=layer, methods=methods, target=target))]
    except NoMatchingDetection as error:
        if len(photos) > 1:
            return [pair for i in range(len(photos))
                    for pair in _explain_chunk(model, query, photos[i:i + 1], tensor[i:i + 1], device, layer, methods,
                                               manifest, missed)]
        manifest.add_failure(str(photos[0].path), str(error))
        missed.append(str(error))
        tqdm.write(f"camlens: skipped {photos[0].path}: {error}", file=sys.stderr)
        return []
    except (ValueError, TypeError) as error:
        raise UsageError(str(error)) from error


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
                        help="detectors: explain the detection of this box (photo pixels); repeat for several")
    parser.add_argument("--reference", metavar="IMAGE",
                        help="models with an embedding: why each photo matches this one (cosine similarity)")
    parser.add_argument("--out", default="camlens-out", help="output folder (default: %(default)s)")
    add_device_option(parser)
    parser.add_argument("--batch-size", type=int, default=8, help="images per forward pass (default: %(default)s)")
    parser.add_argument("--workers", type=int, default=2,
                        help="threads that read and preprocess photos ahead of the model; 0 reads in the main thread "
                             "(default: %(default)s)")
    parser.add_argument("--max-side", type=int, default=DISPLAY_MAX_SIDE, metavar="PX",
                        help="longest side of the pictures written; larger photos are scaled down, 0 keeps their "
                             "own size (default: %(default)s)")
    parser.add_argument("--format", choices=sorted(SAVE_OPTIONS), default="jpg",
                        help="file format of the overlays and grids: jpg (fast, small) or png (lossless) "
                             "(default: %(default)s)")
    parser.add_argument("--resume", action="store_true",
                        help="go on with the run in --out: skip the photos its manifest.jsonl lists as explained, "
                             "retry those that failed (the settings must be the same)")
    parser.add_argument("--boxes", action="store_true",
                        help="draw on each overlay the box around the map's largest region above 15%% of its max")
    parser.set_defaults(run=run)
