"""``--engine ray``: ``camlens explain`` and ``camlens evaluate`` on Ray Data
(:mod:`camlens.distributed`), their rows written as Parquet shards."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..data import DISPLAY_MAX_SIDE
from ..engine.layers import LayerError
from ..models import LoadedModel
from .common import (
    EXIT_INPUT_FAILED,
    EXIT_OK,
    UsageError,
    images_named,
    method_names,
    model_factory,
    ray_options,
    usage_error,
)

__all__ = ["explain", "evaluate"]



def _settings(args: argparse.Namespace, loaded: LoadedModel) -> dict:
    """What a run records beyond the model's name: its weights file and the fit it used."""
    return {"weights": args.weights, "fit": loaded.preprocessing.fit}

def explain(args: argparse.Namespace) -> int:
    """``--engine ray``: the photos' classes explained on Ray Data, as Parquet rows."""
    given = [f"--{name}" for name in ("caption", "question", "box", "reference") if getattr(args, name) is not None]
    if given:
        raise UsageError(f"{', '.join(given)} with --engine ray: distributed runs explain classes (--target)")
    pictures = [option for option, used in (("--max-side", args.max_side != DISPLAY_MAX_SIDE),
                                            ("--format", args.format != "jpg"), ("--boxes", args.boxes)) if used]
    if pictures:
        raise UsageError(f"{', '.join(pictures)} with --engine ray: a distributed run writes rows, not pictures")
    options = ray_options(args)
    methods = method_names(args.methods)
    factory, loaded = model_factory(args)
    named = images_named(args.images)
    out = Path(args.out)
    if (out / "run.json").exists() and not (args.resume or args.overwrite):
        raise UsageError(f"{out}/ holds an earlier run (run.json): --resume continues it, --overwrite replaces it, "
                         "or give another --out")
    try:
        from ..distributed import FolderInUse, SettingsMismatch, explain_on_ray
    except ImportError as error:
        raise UsageError(str(error)) from None
    try:
        done = explain_on_ray(factory, [path for path, _ in named], out, methods=methods,
                              target=args.target or ["top1"], layer=args.layer, batch_size=args.batch_size,
                              resume=not args.overwrite, settings=_settings(args, loaded),
                              loaded=loaded, **options)
    except (SettingsMismatch, FolderInUse, LayerError, ValueError) as error:  # found before any work
        raise usage_error(error, args.model) from None
    return _report(done)


def _report(done) -> int:
    print(f"{done.done} photo(s) done in {done.out}/shards/ ({done.rows} rows written by this run); "
          f"{done.out}/run.json records the run")
    if done.failures:
        print(f"camlens: {len(done.failures)} input(s) failed: {', '.join(list(done.failures)[:10])}", file=sys.stderr)
        return EXIT_INPUT_FAILED
    return EXIT_OK


def evaluate(args: argparse.Namespace, samples, methods: tuple[str, ...], groups: tuple[str, ...], protocol) -> int:
    """``camlens evaluate --engine ray``: the same records as a single process, one row per
    (image, method), resumed unless ``--restart``."""
    if args.diagnose:
        raise UsageError("--diagnose with --engine ray: diagnosis pictures are made by a single process")
    options = ray_options(args)
    factory, loaded = model_factory(args)
    try:
        from ..distributed import FolderInUse, SettingsMismatch, evaluate_on_ray
    except ImportError as error:
        raise UsageError(str(error)) from None
    try:
        done = evaluate_on_ray(factory, samples, Path(args.out), methods=methods, groups=groups, protocol=protocol,
                               layer=None if args.layer == "auto" else args.layer, batch_size=args.batch_size,
                               images_per_step=args.images_per_step,
                               resume=not args.restart, settings=_settings(args, loaded),
                               loaded=loaded, **options)
    except (SettingsMismatch, FolderInUse, LayerError, ValueError) as error:  # found before any work
        raise usage_error(error, args.model) from None
    print(done.summary.markdown())
    return _report(done)
