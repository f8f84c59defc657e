"""``camlens robustness``: the Grad-CAM paper's adversarial-noise diagnostic over a boxed dataset:
does the original class's map still lie on its object once an attack has changed the prediction?"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from ..data import read_image, resolve_class
from ..engine.layers import LayerError
from ..evaluate.adversarial import EPSILONS, attack, robustness, robustness_summary
from ..methods import METHODS
from ..report import grid, overlay
from .common import EXIT_OK, UsageError, method_names, subcommand, usage_error
from .diagnostics import add_dataset_options, dataset_samples, device_model, write_table

__all__ = ["add_parser", "run"]

_SHOWN = ("attack_success", "adversarial_confidence", "pointing_clean", "pointing_adversarial", "energy_clean",
          "energy_adversarial", "map_correlation", "successes", "pointing_clean_succeeded",
          "pointing_adversarial_succeeded", "energy_clean_succeeded", "energy_adversarial_succeeded",
          "map_correlation_succeeded")


def _epsilons(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        values = ()
    if not values or any(not (0 < v <= 255) for v in values):
        raise UsageError(f"--epsilons {text!r}: give comma-separated radii in 1/255 of the pixel range, e.g. 1,2,4,8")
    return tuple(int(v) if v.is_integer() else v for v in values)


def _examples(loaded, samples, methods, epsilon: float, target, steps: int, layer: str, out: Path) -> Path:
    """A sheet of the first photos: the model's input, clean and attacked at the largest ε, with the
    original class's map on each, per method (at most two)."""
    from ..explain import explain

    preprocessing, device = loaded.preprocessing, loaded.device
    images = loaded.batch([read_image(s.path) for s in samples])
    labels = torch.tensor([s.label for s in samples], device=device)
    outcome = attack(loaded, images, labels, epsilon, target, steps)
    attacked = outcome.images
    shown = methods[:2]
    clean, adversarial = (explain(loaded.model, x, layer, shown, labels) for x in (images, attacked))
    predicted, succeeded = outcome.predicted.tolist(), outcome.succeeded.tolist()
    mean = torch.tensor(preprocessing.mean, device=device).view(3, 1, 1)
    std = torch.tensor(preprocessing.std, device=device).view(3, 1, 1)

    def picture(x: torch.Tensor):
        from PIL import Image

        pixels = ((x * std + mean).clamp(0, 1).permute(1, 2, 0) * 255 + 0.5).to(torch.uint8).cpu().numpy()
        return Image.fromarray(pixels)

    panels, titles, labels_text = [], [], []
    for i, sample in enumerate(samples):
        photo, noisy = picture(images[i]), picture(attacked[i])
        row = [photo, noisy]
        for method in shown:
            row += [overlay(photo, clean.maps[method][i]), overlay(noisy, adversarial.maps[method][i])]
        panels.append(row)
        titles.append(["photo", f"attacked, {epsilon}/255"] +
                      [f"{METHODS[m].title} {when}" for m in shown for when in ("clean", "attacked")])
        names = loaded.class_names
        verdict = "attack succeeded" if succeeded[i] else "attack failed"
        labels_text.append(f"{sample.id}: {names[sample.label]}; attacked ({verdict}): top class "
                           f"{names[predicted[i]]}; the maps of {names[sample.label]}")
    path = out / "examples.jpg"
    grid(panels, titles, labels_text, panel_size=180).save(path, quality=85)
    return path


def run(args: argparse.Namespace) -> int:
    methods = method_names(args.methods)
    epsilons = _epsilons(args.epsilons)
    samples = dataset_samples(args)
    loaded = device_model(args)
    try:
        target = None if args.target is None else resolve_class(args.target, loaded.class_names)
    except ValueError as error:
        raise UsageError(f"--target: {error}") from None
    layer = loaded.layer if args.layer == "auto" else args.layer
    out = Path(args.out)
    try:
        records = robustness(loaded, samples, methods, out, epsilons=epsilons, target=target, steps=args.steps,
                             layer=layer, images_per_step=args.images_per_step, resume=not args.restart)
    except LayerError as error:
        raise usage_error(error, args.model) from None
    except ValueError as error:
        raise UsageError(str(error)) from None
    summary = robustness_summary(records)
    print(write_table(out, "summary", summary, ("epsilon", "method", *_SHOWN),
                      {"model": loaded.name, "layer": layer, "target": target, "steps": args.steps}))
    shown = [s for s in samples if s.label != target][: args.examples]
    if shown:
        print(f"examples: {_examples(loaded, shown, methods, max(epsilons), target, args.steps, layer, out)}")
    print(f"per-image results: {out}/robustness.jsonl; summary.md/.csv/.json")
    return EXIT_OK


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = subcommand(
        commands, "robustness", "adversarial noise: does the original class's map stay on its object?",
        "The Grad-CAM paper's adversarial-noise diagnostic on a boxed dataset (a labels/boxes CSV or a folder of "
        "VOC/ImageNet XML): each photo is attacked (PGD in the L∞ ball of each ε, untargeted or toward --target), "
        "and the map of its original class on the clean and on the attacked photo is compared: pointing game, "
        "energy inside the boxes, correlation. Results go to OUT/robustness.jsonl as they come (an interrupted "
        "run resumes); a table per ε and method is printed and written.",
    )
    add_dataset_options(parser, "camlens-robustness", "dotted layer name (default: the model's recommended layer)")
    parser.add_argument("--methods", default="gradcam,gradcampp,xgradcam,layercam,hirescam,ablationcam,liftcam",
                        help="comma-separated method names (default: %(default)s)")
    parser.add_argument("--epsilons", default=",".join(str(e) for e in EPSILONS),
                        help="attack radii in 1/255 of the pixel range (default: %(default)s)")
    parser.add_argument("--target", help="attack toward this class (name or index) instead of away from the true one")
    parser.add_argument("--steps", type=int, default=10, help="PGD steps; 1 is FGSM-like (default: %(default)s)")
    parser.add_argument("--images-per-step", type=int, default=8, help="images attacked together (default: %(default)s)")
    parser.add_argument("--examples", type=int, default=3, help="photos drawn in examples.jpg (default: %(default)s)")
    parser.set_defaults(run=run)
