"""``--engine ray`` gives the numbers of a single process (explain: every class's score,
probability and map; evaluate: every record), records a photo that fails, and survives a worker
killed mid-run (Ray restarts the actor and retries its batch)."""

from __future__ import annotations

import functools
import json
import os
import shutil
import signal
import threading
import time
from collections import Counter

import pytest
import torch

from camlens.cli import main

from support import SAMPLE_IMAGES, photo_dataset

pytest.importorskip("ray", reason="pip install 'camlens[ray]' (the test command installs it)")
pytest.importorskip("pyarrow", reason="pip install 'camlens[ray]' (the test command installs it)")

from camlens.distributed import Shards, explain_on_ray
from camlens.distributed.workers import EXPLAIN_COLUMNS


def _photos(folder, copies: int = 1):
    """The sample photos (``copies`` of each, under other names) and a text file named .jpg."""
    folder.mkdir()
    for copy in range(copies):
        for photo in sorted(SAMPLE_IMAGES.glob("*.jpg")):
            os.symlink(photo, folder / f"{photo.stem}_{copy}.jpg")
    (folder / "notes.jpg").write_text("not a photo")
    return folder


@pytest.fixture
def one_thread():
    """The single process with the one thread each Ray worker has here: a float32 sum's last
    bits depend on how many threads add it up."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_explain_on_ray_gives_every_number_of_a_single_process_run(local_ray, tmp_path, one_thread):
    photos = _photos(tmp_path / "photos")
    options = ["--methods", "gradcam,layercam", "--target", "top2", "--batch-size", "3"]
    assert main(["explain", str(photos), "--out", str(tmp_path / "single"), *options]) == 1  # notes.jpg failed
    assert main(["explain", str(photos), "--out", str(tmp_path / "ray"), "--engine", "ray", *options]) == 1
    rows = Shards(tmp_path / "ray" / "shards", EXPLAIN_COLUMNS).table().to_pylist()
    assert [row["error"] for row in rows if row["id"].endswith("notes.jpg")] == [
        f"{photos / 'notes.jpg'}: not an image file Pillow can read"]
    found = {(row["id"], row["class"], row["method"]): row for row in rows if not row["error"]}
    assert len(found) == 4 * 2 * 2 == len(rows) - 1  # photos × classes × methods, each once
    records = [json.loads(line) for line in (tmp_path / "single" / "manifest.jsonl").read_text().splitlines()]
    compared = 0
    for record in (r["image"] for r in records if "image" in r):
        maps = torch.load(tmp_path / "single" / record["outputs"][-1], weights_only=True)
        for row, cls in enumerate(record["classes"]):
            for method in ("gradcam", "layercam"):
                ray_row = found[(record["file"], cls["index"], method)]
                assert ray_row["score"] == pytest.approx(cls["score"], abs=1e-6, rel=0)
                assert ray_row["probability"] == pytest.approx(cls["probability"], abs=1e-6, rel=0)
                expected = maps["layer_maps"][method][row]
                assert ray_row["map_shape"] == list(expected.shape)
                assert torch.equal(torch.tensor(ray_row["map"], dtype=torch.float16).view(expected.shape),
                                   expected.half())
                compared += 1
    assert compared == 16


def _evaluate_both(tmp_path, dataset, *options) -> tuple[dict, dict]:
    single, ray = tmp_path / "single-eval", tmp_path / "ray-eval"
    assert main(["evaluate", str(dataset), "--out", str(single), *options]) == 0
    assert main(["evaluate", str(dataset), "--out", str(ray), "--engine", "ray", *options]) == 0
    expected = {(r["id"], r["method"]): r for r in map(json.loads, (single / "results.jsonl").read_text().splitlines())}
    from camlens.distributed.workers import EVALUATE_COLUMNS

    rows = Shards(ray / "shards", EVALUATE_COLUMNS).table().to_pylist()
    found = {(r["id"], r["method"]): json.loads(r["record"]) for r in rows}
    assert len(found) == len(rows)  # no (image, method) twice
    for row in rows:  # the metrics as a column of their own, the same as in the record
        record = found[(row["id"], row["method"])]
        assert dict(row["metrics"]) == pytest.approx({k: v for k, v in record.items() if isinstance(v, float)},
                                                      nan_ok=True)
        assert row["class"] == record["label"] and row["predicted"] == record["predicted"]
    return expected, found


def _same_numbers(expected: dict, found: dict) -> int:
    assert found.keys() == expected.keys()
    compared = 0
    for key, record in expected.items():
        assert found[key].keys() == record.keys(), key
        for name, value in record.items():
            if isinstance(value, float):
                assert found[key][name] == pytest.approx(value, abs=1e-6, rel=0, nan_ok=True), (key, name)
                compared += 1
            elif isinstance(value, list) and value and isinstance(value[0], float):
                assert found[key][name] == pytest.approx(value, abs=1e-6, rel=0), (key, name)
                compared += len(value)
            else:
                assert found[key][name] == value, (key, name)
    return compared


def test_evaluate_on_ray_gives_every_record_of_a_single_process_run(local_ray, tmp_path, one_thread):
    expected, found = _evaluate_both(tmp_path, photo_dataset(tmp_path), "--methods", "gradcam,layercam", "--metrics",
                                     "faithfulness,axioms,localization", "--steps", "4", "--batch-size", "4")
    assert _same_numbers(expected, found) > 50
    single, ray = (json.loads((tmp_path / f / "summary.json").read_text()) for f in ("single-eval", "ray-eval"))
    assert _close(single, ray)  # and the same summary, written beside the rows


def _close(a, b) -> bool:
    """Two JSON values equal but for floats within 1e-6."""
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b))
    if isinstance(a, float):
        return a == pytest.approx(b, abs=1e-6, nan_ok=True)
    return a == b


@pytest.mark.slow
def test_on_the_boxed_imagenet_photos_too(local_ray, tmp_path, shared_data, one_thread):
    annotations = shared_data("imagenet_val_bbox/annotations.csv")
    expected, found = _evaluate_both(tmp_path, annotations, "--methods", "gradcam", "--metrics",
                                     "axioms,localization")
    assert len({image for image, _ in expected}) == 21  # 27 boxes on 21 photos
    assert _same_numbers(expected, found) > 100


def test_a_killed_worker_is_restarted_and_its_batch_retried(local_ray, tmp_path):
    import camlens

    photos = sorted(_photos(tmp_path / "photos", copies=3).glob("*.jpg"))
    out = tmp_path / "out"
    finished: dict = {}
    runner = threading.Thread(target=lambda: finished.update(run=explain_on_ray(
        functools.partial(camlens.load, "efficientnet-lite0"), photos, out, methods=("gradcam",), batch_size=1,
        progress=False)))
    runner.start()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not list((out / "shards").glob("part-*.parquet")):
        time.sleep(0.05)
    first = Shards(out / "shards", EXPLAIN_COLUMNS).table(["worker"]).column("worker").to_pylist()[0]
    os.kill(first, signal.SIGKILL)  # the actor's process, mid-run
    runner.join(timeout=240)
    assert not runner.is_alive() and "run" in finished
    rows = finished["run"].table().to_pylist()
    assert Counter(row["id"] for row in rows) == Counter({str(p): 1 for p in photos})  # each photo once
    assert first in {row["worker"] for row in rows} and len({row["worker"] for row in rows}) == 2  # a new actor


def test_a_photo_that_failed_is_tried_again_on_resume_and_its_failure_row_is_superseded(local_ray, tmp_path):
    photos = _photos(tmp_path / "photos")
    options = ["--methods", "gradcam", "--engine", "ray", "--out", str(tmp_path / "out")]
    assert main(["explain", str(photos), *options]) == 1
    (photos / "notes.jpg").unlink()
    shutil.copy(SAMPLE_IMAGES / "owl.jpg", photos / "notes.jpg")  # the file is readable now
    assert main(["explain", str(photos), "--resume", *options]) == 0
    assert json.loads((tmp_path / "out" / "run.json").read_text())["rows_this_run"] == 1  # only that photo
    rows = Shards(tmp_path / "out" / "shards", EXPLAIN_COLUMNS).table().to_pylist()
    assert len(rows) == 5 and not any(row["error"] for row in rows)


def test_a_folder_holds_one_run_at_a_time_and_a_bad_layer_removes_nothing(local_ray, tmp_path, capsys):
    options = ["--methods", "gradcam", "--engine", "ray", "--out", str(tmp_path / "out")]
    assert main(["explain", str(SAMPLE_IMAGES / "owl.jpg"), *options]) == 0
    held = Shards(tmp_path / "out" / "shards", EXPLAIN_COLUMNS, lock=True)  # another run, writing
    try:
        assert main(["explain", str(SAMPLE_IMAGES / "owl.jpg"), "--resume", *options]) == 2
        assert "another run is writing in" in capsys.readouterr().err
    finally:
        held.close()
    assert main(["explain", str(SAMPLE_IMAGES / "owl.jpg"), "--overwrite", "--layer", "_blocks.99", *options]) == 2
    assert "_blocks.99" in capsys.readouterr().err
    assert Shards(tmp_path / "out" / "shards", EXPLAIN_COLUMNS).table().num_rows == 1  # the earlier run is kept


def test_options_a_distributed_run_refuses(tmp_path, capsys):
    photos = str(SAMPLE_IMAGES)
    for options, says in ((["--caption", "a red circle"], "--caption with --engine ray"),
                          (["--workers", "0"], "--workers must be at least 1 with --engine ray"),
                          (["--gpus-per-worker", "-1"], "--gpus-per-worker must be at least 0"),
                          (["--device", "cpu"], "--device with --engine ray"),
                          (["--max-side", "512", "--boxes"], "--max-side, --boxes with --engine ray")):
        assert main(["explain", photos, "--engine", "ray", "--out", str(tmp_path / "x"), *options]) == 2
        assert says in capsys.readouterr().err
    assert main(["explain", photos, "--address", "auto", "--out", str(tmp_path / "x")]) == 2
    assert "--address without --engine ray" in capsys.readouterr().err
    assert main(["explain", photos, "--resume", "--overwrite", "--out", str(tmp_path / "x")]) == 2
    assert "cannot be combined" in capsys.readouterr().err
    assert main(["evaluate", str(photo_dataset(tmp_path)), "--engine", "ray", "--diagnose"]) == 2
    assert "--diagnose with --engine ray" in capsys.readouterr().err
    shutil.rmtree(tmp_path / "x", ignore_errors=True)


def test_a_killed_run_resumes_without_computing_a_row_twice_or_losing_one(local_ray, tmp_path):
    """The driver is killed (SIGKILL, as a crash or an out-of-memory kill would) once it has
    written some shards; ``--resume`` computes only the rest, and the rows are those of an
    uninterrupted run."""
    import subprocess
    import sys

    from support import REPO

    photos = _photos(tmp_path / "photos", copies=3)
    options = ["--methods", "gradcam", "--batch-size", "1", "--engine", "ray"]
    killed = tmp_path / "killed"
    environment = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")]))
    driver = subprocess.Popen([sys.executable, "-m", "camlens", "explain", str(photos), "--out", str(killed), *options],
                              env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and len(list((killed / "shards").glob("part-*.parquet"))) < 3:
        assert driver.poll() is None, "the run ended before it could be killed"
        time.sleep(0.05)
    os.killpg(driver.pid, signal.SIGKILL)  # the driver and the local Ray it started
    driver.wait()
    written = Shards(killed / "shards", EXPLAIN_COLUMNS).table()
    before = written.num_rows
    assert 3 <= before < 13
    retried = sum(bool(error) for error in written.column("error").to_pylist())  # notes.jpg, if it came first

    assert main(["explain", str(photos), "--out", str(killed), "--resume", *options]) == 1  # notes.jpg fails
    # nothing done twice: the rows written before the kill, less a failure (tried again), are not written again
    assert json.loads((killed / "run.json").read_text())["rows_this_run"] == 13 - before + retried
    assert main(["explain", str(photos), "--out", str(tmp_path / "whole"), *options]) == 1
    key = lambda row: (row["id"], row["class"], row["method"])
    resumed = sorted(Shards(killed / "shards", EXPLAIN_COLUMNS).table().to_pylist(), key=key)
    whole = sorted(Shards(tmp_path / "whole" / "shards", EXPLAIN_COLUMNS).table().to_pylist(), key=key)
    assert len(resumed) == len(whole) == 13 and len({key(row) for row in resumed}) == 13
    for mine, theirs in zip(resumed, whole):
        assert {k: v for k, v in mine.items() if k != "worker"} == {k: v for k, v in theirs.items() if k != "worker"}
