"""``camlens evaluate``: methods × metrics over a labelled dataset, resumable, with a summary table."""

from __future__ import annotations

import argparse
import sys

from ..engine.layers import LayerError
from ..evaluate import Protocol, ProtocolMismatch, check_dataset, check_groups, evaluate
from ..metrics.faithfulness import MASK_KINDS, SCORE_KINDS
from . import on_ray
from .common import (
    EXIT_INPUT_FAILED,
    EXIT_OK,
    UsageError,
    add_device_option,
    add_engine_options,
    add_model_options,
    check_engine,
    load_model,
    method_names,
    parse_device,
    subcommand,
    usage_error,
)
from .diagnostics import dataset_samples

__all__ = ["add_parser", "run"]


def run(args: argparse.Namespace) -> int:
    check_engine(args)
    methods = method_names(args.methods)
    groups = tuple(g.strip() for g in args.metrics.split(",") if g.strip())
    try:
        check_groups(groups)
    except ValueError as error:
        raise UsageError(str(error)) from None
    samples = dataset_samples(args)
    try:
        check_dataset(samples, groups)
    except ValueError as error:
        raise UsageError(f"{args.dataset}: {error}") from None
    try:
        protocol = Protocol(steps=args.steps, score=args.score, mask=args.mask, box_threshold=args.box_threshold,
                            largest_component=not args.all_components, tolerance=args.tolerance)
    except ValueError as error:
        raise UsageError(str(error)) from None
    if args.engine == "ray":
        return on_ray.evaluate(args, samples, methods, groups, protocol)
    device = parse_device(args.device)
    loaded = load_model(args.model, args.weights, args.fit)  # after the cheap checks: a usage error costs no model load
    loaded.model.to(device)
    layer = None if args.layer == "auto" else args.layer
    try:
        summary = evaluate(loaded, samples, methods, args.out, groups=groups, layer=layer, protocol=protocol,
                           batch_size=args.batch_size, images_per_step=args.images_per_step, resume=not args.restart,
                           diagnose=args.diagnose)
    except (ProtocolMismatch, LayerError) as error:
        raise usage_error(error, args.model) from None
    print(summary.markdown())
    print(f"\nper-image results: {args.out}/results.jsonl; summary.md/.csv/.json" + (", curves.png" if summary.curves else ""))
    if summary.failures:
        print(f"camlens: {len(summary.failures)} image(s) could not be read", file=sys.stderr)
        return EXIT_INPUT_FAILED
    return EXIT_OK


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = subcommand(
        commands, "evaluate", "measure methods on a dataset: faithfulness, axioms, Shapley error, localization",
        "Evaluate CAM methods on a labelled dataset (a labels/boxes CSV or a folder of VOC/ImageNet XML). "
        "Per-image results are appended to OUT/results.jsonl as they come, so an interrupted run "
        "resumes where it stopped; a summary table (mean ± 95% CI) is printed and written.",
    )
    parser.add_argument("dataset", help="labels/boxes CSV, or a folder of XML annotations")
    parser.add_argument("--images", help="folder the dataset's image paths are relative to (default: the CSV's folder)")
    add_model_options(parser, "dotted layer name (default: the model's recommended layer)")
    add_device_option(parser)
    parser.add_argument("--methods", default="gradcam,gradcampp,xgradcam,layercam,ablationcam,liftcam",
                        help="comma-separated method names (default: %(default)s, the fast ones). Slow: scorecam "
                             "and scorecam_fast (a pass of the whole model per map: 1,280 on EfficientNet-Lite0), "
                             "shapley (thousands of passes of the network after the layer per image)")
    parser.add_argument("--metrics", default="faithfulness,axioms",
                        help="comma-separated groups: faithfulness, occlusion, axioms, shapley, localization (default: %(default)s)")
    parser.add_argument("--limit", type=int, help="only the first N images")
    parser.add_argument("--steps", type=int, default=32, help="deletion/insertion steps (default: %(default)s)")
    parser.add_argument("--score", choices=SCORE_KINDS, default="probability",
                        help="the class score the faithfulness metrics use (default: %(default)s)")
    parser.add_argument("--mask", choices=MASK_KINDS, default="soft",
                        help="Average Drop / Increase in Confidence / ADD mask (default: %(default)s)")
    parser.add_argument("--box-threshold", type=float, default=0.15,
                        help="binarize maps at this fraction of their max for boxes (default: %(default)s)")
    parser.add_argument("--all-components", action="store_true",
                        help="box around all components above the threshold, not only the largest")
    parser.add_argument("--tolerance", type=float, default=15.0, help="pointing-game tolerance in pixels (default: %(default)s)")
    parser.add_argument("--batch-size", type=int,
                        help="images per forward pass of the metrics (default: 8 on a CPU, 64 on a GPU)")
    parser.add_argument("--images-per-step", type=int, default=8,
                        help="images explained and measured together; results are written after each step "
                             "(default: %(default)s)")
    parser.add_argument("--out", default="camlens-eval", help="output folder (default: %(default)s)")
    parser.add_argument("--restart", action="store_true", help="discard earlier results in OUT instead of resuming")
    parser.add_argument("--diagnose", action="store_true",
                        help="for misclassified images, save the maps for the predicted and the true class side by side")
    add_engine_options(parser)
    parser.set_defaults(run=run)
