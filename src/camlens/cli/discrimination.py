"""``camlens discrimination``: the Grad-CAM paper's class-discrimination study without people — over
images holding two classes, how often each method's map of one class, alone, makes the model prefer
that class."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..engine.layers import LayerError
from ..evaluate.discrimination import FRACTIONS, discrimination, discrimination_summary, read_pairs
from ..metrics.discrimination import FILLS
from .common import EXIT_OK, UsageError, add_device_option, add_model_options, method_names, subcommand, usage_error
from .diagnostics import device_model, first, write_table

__all__ = ["add_parser", "run"]


def _fractions(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) / 100 for v in text.split(",") if v.strip())
    except ValueError:
        values = ()
    if not values or any(not 0 < v <= 1 for v in values):
        raise UsageError(f"--percent {text!r}: give comma-separated percentages of pixels kept, e.g. 5,10,20")
    return values


def run(args: argparse.Namespace) -> int:
    methods = method_names(args.methods)
    fractions = _fractions(args.percent)
    loaded = device_model(args)
    try:
        pairs = read_pairs(args.pairs, loaded.class_names)
    except (OSError, ValueError) as error:
        raise UsageError(f"cannot read the pairs: {error}") from None
    pairs = first(pairs, args.limit, args.pairs)
    layer = loaded.layer if args.layer == "auto" else args.layer
    out = Path(args.out)
    try:
        records = discrimination(loaded, pairs, out, methods, fractions=fractions, fill=args.fill, layer=layer,
                                 images_per_step=args.images_per_step, resume=not args.restart)
    except LayerError as error:
        raise usage_error(error, args.model) from None
    except ValueError as error:
        raise UsageError(str(error)) from None
    rows = discrimination_summary(records, recognised_only=not args.all_images)
    print(write_table(out, "discrimination", rows, ("method", "fraction", "images", "rate", "low", "high"),
                      {"model": loaded.name, "layer": layer, "fill": args.fill, "all_images": args.all_images}))
    if not rows:
        print("the model recognises both classes on none of the images (both in its top 5): see --all-images")
    print(f"chance is 0.5; per-map results: {out}/discrimination.jsonl; discrimination.md/.csv/.json")
    return EXIT_OK


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = subcommand(
        commands, "discrimination", "class discrimination: does a method's map reveal which of two classes it shows?",
        "The Grad-CAM paper's class-discrimination study with the model as the judge: for every image of PAIRS "
        "(a CSV file,class_a,class_b) and each of its two classes, keep the top --percent of pixels of each "
        "method's map of that class, blur the rest (or fill it with the mean colour), and record whether the "
        "model then prefers the explained class. Rates per method with 95% intervals, over the images whose two "
        "classes the model recognises (both in its top 5); chance is 0.5. Results go to "
        "OUT/discrimination.jsonl as they come (an interrupted run resumes).",
    )
    parser.add_argument("pairs", help="CSV with columns file, class_a, class_b (names or indices)")
    add_model_options(parser, "dotted layer name (default: the model's recommended layer)")
    add_device_option(parser)
    parser.add_argument("--methods", default="gradcam,layercam,liftcam,guided_backprop,guided_gradcam",
                        help="comma-separated method names (default: %(default)s)")
    parser.add_argument("--percent", default=",".join(f"{f * 100:g}" for f in FRACTIONS),
                        help="percentages of pixels kept (default: %(default)s)")
    parser.add_argument("--fill", choices=FILLS, default="blur", help="what replaces the rest (default: %(default)s)")
    parser.add_argument("--all-images", action="store_true",
                        help="count every image, not only those whose two classes the model recognises")
    parser.add_argument("--limit", type=int, help="only the first N images")
    parser.add_argument("--images-per-step", type=int, default=8, help="images explained together (default: %(default)s)")
    parser.add_argument("--out", default="camlens-discrimination", help="output folder (default: %(default)s)")
    parser.add_argument("--restart", action="store_true", help="discard earlier results in OUT instead of resuming")
    parser.set_defaults(run=run)
