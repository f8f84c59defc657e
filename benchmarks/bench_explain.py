"""``camlens explain`` on a folder of real photos, this checkout side by side with an earlier
revision (default: the last one before explain streamed), each as a fresh process:

    python benchmarks/bench_explain.py                      # 200 photos and one 12-megapixel photo
    python benchmarks/bench_explain.py --photos 1000 --no-baseline   # memory on a large folder

Prints photos/s (whole command, and per photo once the model is loaded: the slope between a run
on one photo and a run on all of them) and peak resident memory of each process. The photos are
the first of ``imagenet_sample_1000`` in the shared data (CAMLENS_DATA, default ../shared/data);
EfficientNet-Lite0 and the default methods, as a new user runs it.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
from contextlib import ExitStack
from pathlib import Path

from _harness import ROOT, revision, run_camlens

DATA = Path(os.environ.get("CAMLENS_DATA", ROOT.parent / "shared" / "data"))
BASELINE = "20c9396"  # the last revision that read every photo up front and drew with matplotlib


def run_explain(source: Path, images: list[Path], out: Path, extra: list[str]) -> tuple[float, float]:
    """Seconds and peak resident MiB of ``camlens explain IMAGES --out OUT`` run from ``source``."""
    return run_camlens(source, ["explain", *map(str, images), "--out", str(out), *extra])


def folder_of(photos: list[Path], folder: Path) -> Path:
    folder.mkdir(parents=True)
    for photo in photos:
        (folder / photo.name).symlink_to(photo)
    return folder


def large_photo(photo: Path, folder: Path, size: tuple[int, int] = (4000, 3000)) -> Path:
    from PIL import Image

    with Image.open(photo) as image:
        path = folder / "twelve_megapixels.jpg"
        image.convert("RGB").resize(size, Image.BICUBIC).save(path, quality=92)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=int, default=200)
    parser.add_argument("--baseline", default=BASELINE, help="git revision to compare with (default: %(default)s)")
    parser.add_argument("--no-baseline", action="store_true", help="measure this checkout only")
    parser.add_argument("--skip-large", action="store_true", help="leave out the 12-megapixel photo")
    args = parser.parse_args()
    pool = sorted((DATA / "imagenet_sample_1000").glob("*.JPEG"))
    if len(pool) < args.photos:
        raise SystemExit(f"need {args.photos} photos in {DATA / 'imagenet_sample_1000'} (set CAMLENS_DATA)")
    work = Path(tempfile.mkdtemp(prefix="camlens-bench-explain-"))
    sources = {"this checkout": ROOT}
    with ExitStack() as stack:
        stack.callback(shutil.rmtree, work, ignore_errors=True)
        if not args.no_baseline:
            baseline = stack.enter_context(revision(args.baseline, work / "baseline"))
            sources = {f"baseline {args.baseline}": baseline, **sources}
        folder = folder_of(pool[:args.photos], work / "photos")
        single = [pool[0]]
        big = None if args.skip_large else large_photo(pool[0], work)
        print(f"camlens explain, EfficientNet-Lite0, default methods, {os.cpu_count()} CPU cores; "
              f"{args.photos} photos of imagenet_sample_1000")
        rates = {}
        for name, source in sources.items():
            one, _ = run_explain(source, single, work / "out-one", [])
            seconds, peak = run_explain(source, [folder], work / "out-folder", [])
            shutil.rmtree(work / "out-one"), shutil.rmtree(work / "out-folder")
            steady = (args.photos - 1) / max(seconds - one, 1e-9)
            rates[name] = (args.photos / seconds, steady)
            print(f"  {name:24s} {seconds:7.1f} s  {args.photos / seconds:6.2f} photos/s  "
                  f"({steady:6.2f} photos/s after loading: 1 photo took {one:.1f} s)  peak RSS {peak:7.0f} MiB",
                  flush=True)
            if big is not None:
                seconds, peak = run_explain(source, [big], work / "out-big", [])
                shutil.rmtree(work / "out-big")
                print(f"  {'':24s} one 4000×3000 photo: {seconds:6.1f} s, peak RSS {peak:7.0f} MiB", flush=True)
        if len(rates) == 2:
            (old_total, old_steady), (new_total, new_steady) = rates.values()
            print(f"this checkout / baseline: {new_total / old_total:.2f}× photos/s over the whole command, "
                  f"{new_steady / old_steady:.2f}× after loading (target ≥ 4×)")


if __name__ == "__main__":
    main()
