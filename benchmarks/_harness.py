"""Shared by the benchmarks: interleaved timing, peak memory of one call in a fresh process, and
the ``camlens`` command of this checkout or of an earlier revision, timed as a fresh process."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def time_interleaved(table: dict[str, Callable[[], object]], rounds: int, warmup: bool = True) -> dict[str, list[float]]:
    """Seconds per call of each entry, over ``rounds`` rounds in shuffled order (so that drift of
    the machine hits every entry alike), after one warm-up call each."""
    if warmup:
        for run in table.values():
            run()
    samples: dict[str, list[float]] = {name: [] for name in table}
    order = list(table)
    for _ in range(rounds):
        random.shuffle(order)
        for name in order:
            start = time.perf_counter()
            table[name]()
            samples[name].append(time.perf_counter() - start)
    return samples


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


@contextmanager
def peak_tracker():
    """Peak resident memory above the start, in MiB, of the block (Linux: VmHWM after a reset)."""
    with open("/proc/self/clear_refs", "w") as clear:
        clear.write("5")  # resets VmHWM to the current resident set
    before = _status_kib("VmRSS")
    result: dict[str, float] = {}
    yield result
    result["peak_extra_mib"] = (_status_kib("VmHWM") - before) / 1024


def memory_supported() -> bool:
    return os.path.exists("/proc/self/clear_refs")


def peak_in_subprocess(script: str, arguments: list[str]) -> float:
    """Run ``script --probe ARGUMENTS`` in a fresh process whose glibc returns freed large blocks
    at once, and read the peak it prints as its last line (JSON with ``peak_extra_mib``)."""
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536", MALLOC_TRIM_THRESHOLD_="0")
    completed = subprocess.run([sys.executable, script, "--probe", *arguments], env=env, capture_output=True,
                               text=True, check=True)
    return json.loads(completed.stdout.strip().splitlines()[-1])["peak_extra_mib"]


def run_camlens(source: Path, arguments: list[str]) -> tuple[float, float]:
    """Seconds and peak resident MiB of ``camlens ARGUMENTS`` run from the checkout ``source``
    in a fresh process; a failure ends the benchmark with the command's error output."""
    env = dict(os.environ, PYTHONPATH=str(source / "src"))
    start = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-m", "camlens", *arguments], env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
    errors = process.stderr.read().decode(errors="replace")
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - start
    process.stderr.close()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"camlens {' '.join(arguments[:1])} from {source} failed:\n{errors[-2000:]}")
    return seconds, usage.ru_maxrss / 1024


@contextmanager
def revision(name: str, folder: Path):
    """A checkout of git revision ``name`` in ``folder`` (a worktree), removed afterwards."""
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "--quiet", str(folder), name], check=True)
    try:
        yield folder
    finally:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(folder)], check=False)
