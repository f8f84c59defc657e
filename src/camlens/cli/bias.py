"""``camlens bias``: the Grad-CAM paper's dataset-bias diagnostic over a labelled dataset — per
class, how much of the map's evidence lies on the object and how much on regions the user names
(a border, a watermark, the background); classes whose evidence lies elsewhere are flagged and
drawn."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..engine.layers import LayerError
from ..evaluate.bias import FLAG_LIFT, FLAG_THRESHOLD, bias_audit, bias_examples, bias_summary
from ..evaluate.regions import parse_region
from .common import EXIT_OK, UsageError, method_names, subcommand, usage_error
from .diagnostics import add_dataset_options, dataset_samples, device_model, write_table

__all__ = ["add_parser", "run"]


def run(args: argparse.Namespace) -> int:
    method, *more = method_names(args.method)
    if more:
        raise UsageError("--method takes one method; run the command once per method to compare them")
    try:
        regions = [parse_region(text) for text in args.region]
    except ValueError as error:
        raise UsageError(f"--region: {error}") from None
    samples = dataset_samples(args)
    loaded = device_model(args)
    layer = loaded.layer if args.layer == "auto" else args.layer
    out = Path(args.out)
    try:
        records = bias_audit(loaded, samples, out, method=method, regions=regions, layer=layer,
                             images_per_step=args.images_per_step, resume=not args.restart)
    except LayerError as error:
        raise usage_error(error, args.model) from None
    except ValueError as error:
        raise UsageError(str(error)) from None
    rows = bias_summary(records, loaded.class_names, args.threshold, args.lift)
    columns = ["name", "images", "accuracy", "energy_object", "object_area"] + \
              [f"energy:{r.name}" for r in regions] + ["flagged", "why"]
    print(write_table(out, "classes", rows, columns, {"model": loaded.name, "layer": layer, "method": method,
                                                      "regions": args.region, "threshold": args.threshold,
                                                      "lift": args.lift}))
    flagged = [row for row in rows if row["flagged"]]
    for row in flagged[: args.examples_classes]:
        print(f"flagged {row['name']}: {bias_examples(loaded, samples, records, row['class'], out, layer=layer)}")
    print(f"{len(flagged)} of {len(rows)} classes flagged; per-image results: {out}/bias.jsonl; classes.md/.csv/.json")
    return EXIT_OK


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = subcommand(
        commands, "bias", "dataset bias: is each class's evidence on its object, or on something else?",
        "The Grad-CAM paper's dataset-bias diagnostic on a labelled dataset with boxes or masks: each image is "
        "explained for its true class, and the share of the map's energy on the object and on each --region is "
        "recorded (OUT/bias.jsonl, written as it goes; an interrupted run resumes). Per class, a table says how "
        "much evidence lies where; a class is flagged when most of it lies off the object (and the object holds "
        "less than --lift times a uniform map's share), or when a region holds more of it per pixel than the "
        "object. Each flagged class gets a sheet of its images with their maps.",
    )
    add_dataset_options(parser, "camlens-bias", "dotted layer name (default: the model's recommended layer)")
    parser.add_argument("--method", default="gradcam", help="the method whose maps are audited (default: %(default)s)")
    parser.add_argument("--region", action="append", default=[], metavar="NAME=SPEC",
                        help="a region where evidence should not be, measured for every image: border:W (a frame W "
                             "pixels wide), x0,y0,x1,y1 (a rectangle in the photo's pixels), background (off the "
                             "object) or a mask image's path; repeat for several")
    parser.add_argument("--threshold", type=float, default=FLAG_THRESHOLD,
                        help="flag a class with less than this share of its evidence on the object (default: %(default)s)")
    parser.add_argument("--lift", type=float, default=FLAG_LIFT,
                        help="… unless the object holds at least this many times a uniform map's share (default: "
                             "%(default)s)")
    parser.add_argument("--images-per-step", type=int, default=8, help="images explained together (default: %(default)s)")
    parser.add_argument("--examples-classes", type=int, default=8,
                        help="flagged classes drawn as example sheets (default: %(default)s)")
    parser.set_defaults(run=run)
