"""Photos per second of ``camlens explain`` in one process and on Ray Data with 1 and 2 workers,
on this machine, side by side in one run (issue 19). Each variant explains the same photos with
the same model, methods and batch size, and is timed from the command's start to its end as a
fresh process, so Ray's start-up (a local cluster, actors that each load the model) is counted
as a user pays it.

    python benchmarks/bench_ray.py --photos 200            # ImageNet photos of the shared data
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("CAMLENS_DATA", ROOT.parent / "shared" / "data"))


# the same rows as a Ray run, from one process: read ahead by threads, explained in batches
ROWS_ONLY = """
import sys, camlens
from camlens.data import read_image
from camlens.data.stream import stream_photos
from pathlib import Path
listing, methods, batch = sys.argv[1], tuple(sys.argv[2].split(",")), int(sys.argv[3])
loaded = camlens.load("efficientnet-lite0")
paths = [Path(line) for line in Path(listing).read_text().split()[1:]]
rows = 0
for chunk in stream_photos(paths, loaded.preprocessing, batch, 2):
    explanation = camlens.explain(loaded.model, chunk.tensor, layer="auto", methods=methods)
    rows += len(explanation) * len(methods)
    [explanation.layer_maps[m].half().tolist() for m in methods]
print(rows)
"""


def timed(arguments: list[str]) -> float:
    environment = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    command = ["-c", ROWS_ONLY, *arguments[1:]] if arguments[0] == "rows-only" else ["-m", "camlens", *arguments]
    start = time.perf_counter()
    done = subprocess.run([sys.executable, *command], env=environment, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if done.returncode not in (0, 1):
        raise SystemExit(f"camlens {' '.join(arguments)} failed:\n{done.stderr[-3000:]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=int, default=200)
    parser.add_argument("--methods", default="gradcam,layercam")
    parser.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args()
    source = DATA / "imagenet_sample_1000"
    photos = sorted(source.glob("*.JPEG"))[: args.photos]
    if not photos:
        raise SystemExit(f"no photos in {source} (set CAMLENS_DATA)")
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        listing = folder / "photos.csv"
        listing.write_text("file\n" + "\n".join(str(p) for p in photos) + "\n")
        common = [str(listing), "--methods", args.methods, "--batch-size", str(args.batch_size)]
        few = folder / "few.csv"
        few.write_text("file\n" + "\n".join(str(p) for p in photos[:8]) + "\n")
        variants = {
            "one process (overlays, grids, report)": ["explain", *common, "--out", str(folder / "local")],
            "one process (rows only)": ["rows-only", str(listing), args.methods, str(args.batch_size)],
            "Ray, 1 worker (Parquet rows)": ["explain", *common, "--engine", "ray", "--workers", "1",
                                             "--out", str(folder / "ray1")],
            "Ray, 2 workers (Parquet rows)": ["explain", *common, "--engine", "ray", "--workers", "2",
                                              "--out", str(folder / "ray2")],
        }
        seconds = {name: timed(arguments) for name, arguments in variants.items()}
        rows = {name: json.loads((folder / out / "run.json").read_text())["photos"]
                for name, out in zip(list(variants)[2:], ("ray1", "ray2"))}
        fixed = timed(["explain", str(few), "--methods", args.methods, "--batch-size", str(args.batch_size),
                       "--engine", "ray", "--workers", "1", "--out", str(folder / "ray-few")])
        shards = list((folder / "ray1" / "shards").glob("*.parquet"))
        written = json.loads((folder / "ray1" / "run.json").read_text())["rows_this_run"]
        bytes_per_row = sum(p.stat().st_size for p in shards) / written
    parts = parts_of_a_photo(photos[:96], tuple(args.methods.split(",")), args.batch_size)
    base = seconds["one process (overlays, grids, report)"]
    print(f"{len(photos)} ImageNet photos, EfficientNet-Lite0, {args.methods}, batch {args.batch_size}, "
          f"{os.cpu_count()} CPU cores; wall time of the whole command")
    print(f"{'':40s} {'seconds':>8s} {'photos/s':>9s} {'vs one process':>15s}")
    for name, elapsed in seconds.items():
        print(f"{name:40s} {elapsed:8.1f} {len(photos) / elapsed:9.2f} {base / elapsed:14.2f}×")
    per_photo = (seconds["Ray, 1 worker (Parquet rows)"] - fixed) / (len(photos) - 8)
    print(f"Ray, 1 worker, on 8 photos: {fixed:.1f} s, so a run costs about {fixed - 8 * per_photo:.1f} s to start "
          f"and {1000 * per_photo:.0f} ms a photo after that")
    print(f"the parts of a photo, one thread: reading and preprocessing {parts['read']:.1f} ms, explaining "
          f"{parts['explain']:.1f} ms; {bytes_per_row:.0f} bytes of Parquet a row; peak memory of one process "
          f"{parts['peak']:.0f} MB")
    assert all(count == len(photos) for count in rows.values()), rows


def parts_of_a_photo(photos: list[Path], methods: tuple[str, ...], batch: int) -> dict[str, float]:
    """Milliseconds a photo for reading and preprocessing, and for explaining, in one thread (as
    one Ray worker with one CPU runs); and the peak resident memory of this process, in MB."""
    import resource

    import torch

    import camlens
    from camlens.data import read_image

    torch.set_num_threads(1)
    loaded = camlens.load("efficientnet-lite0")
    start = time.perf_counter()
    inputs = [loaded.preprocessing(read_image(photo)) for photo in photos]
    read = (time.perf_counter() - start) / len(photos)
    camlens.explain(loaded.model, torch.stack(inputs[:batch]), layer="_head_act", methods=methods)  # warm-up
    start = time.perf_counter()
    for first in range(0, len(inputs), batch):
        camlens.explain(loaded.model, torch.stack(inputs[first:first + batch]), layer="_head_act", methods=methods)
    explaining = (time.perf_counter() - start) / len(inputs)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"read": 1000 * read, "explain": 1000 * explaining, "peak": peak}


if __name__ == "__main__":
    main()
