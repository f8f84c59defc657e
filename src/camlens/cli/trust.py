"""``camlens trust``: which of two models to trust — both explained on the images where their
predictions agree, and the measures that separate a model right for the right reason from one
right for the wrong one (the automatic analogue of the Grad-CAM paper's trust study)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..engine.layers import LayerError, resolve_layer
from ..evaluate.trust import compare_models, trust_sheet, trust_summary
from .common import EXIT_OK, UsageError, method_names, subcommand, usage_error
from .diagnostics import add_dataset_options, dataset_samples, device_model, write_table

__all__ = ["add_parser", "run"]


def run(args: argparse.Namespace) -> int:
    method, *more = method_names(args.method)
    if more:
        raise UsageError("--method takes one method")
    samples = dataset_samples(args)
    models = [device_model(args), device_model(args, args.versus, args.versus_weights)]
    layers = [None if args.layer == "auto" else args.layer, None if args.versus_layer == "auto" else args.versus_layer]
    for model, layer, name in zip(models, layers, (args.model, args.versus)):
        try:
            if layer is not None:
                resolve_layer(model.model, layer)
        except LayerError as error:
            raise usage_error(error, name) from None
    out = Path(args.out)
    try:
        records = compare_models(models, samples, out, method=method, layers=layers, steps=args.steps,
                                 resume=not args.restart)
    except LayerError as error:
        raise usage_error(error, args.model) from None
    except ValueError as error:
        raise UsageError(str(error)) from None
    rows = trust_summary(records)
    print(write_table(out, "trust", rows, ("model", "images", "energy_object", "pointing", "deletion", "insertion",
                                           "wins", "trust"),
                      {"models": [m.name for m in models], "method": method, "layers": layers, "steps": args.steps}))
    agreed = rows[0]["images"] if rows else 0
    print(f"{agreed} of {len(samples)} images predicted alike by both models")
    trusted = [row["model"] for row in rows if row["trust"]]
    if trusted:
        row = next(r for r in rows if r["trust"])
        print(f"trust {trusted[0]}: its map puts more of the evidence on the object on {row['wins']:.0%} of them")
    if agreed and args.examples:
        print(f"side by side: {trust_sheet(models, samples, records, out, count=args.examples, layers=layers)}")
    print(f"per-image results: {out}/trust.jsonl; trust.md/.csv/.json")
    return EXIT_OK


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = subcommand(
        commands, "trust", "which of two models to trust: their evidence on the images they agree on",
        "Runs --model and --versus on a labelled dataset with boxes or masks, keeps the images on which their "
        "predictions agree, and explains the label with each: the share of the map on the object, the pointing "
        "game, and deletion/insertion (faithful to each model's own maps). The model whose evidence lies on the "
        "object on more of those images is marked to trust; trust.jpg shows the images where they differ most. "
        "Results go to OUT/trust.jsonl as they come (an interrupted run resumes).",
    )
    add_dataset_options(parser, "camlens-trust", "--model's layer (default: its recommended layer)")
    parser.add_argument("--versus", required=True, help="the second model (zoo name, torchvision:NAME, …)")
    parser.add_argument("--versus-weights", metavar="PATH", help="the second model's weights file")
    parser.add_argument("--versus-layer", default="auto", help="the second model's layer (default: its recommended one)")
    parser.add_argument("--method", default="gradcam", help="the method explaining both (default: %(default)s)")
    parser.add_argument("--steps", type=int, default=16, help="deletion/insertion steps (default: %(default)s)")
    parser.add_argument("--examples", type=int, default=6, help="images drawn in trust.jpg (default: %(default)s)")
    parser.set_defaults(run=run)
