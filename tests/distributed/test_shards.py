"""Shards are written whole or not at all, their ids say what is done, and a resumed run must
ask for the same settings."""

from __future__ import annotations

import json

import pytest

pyarrow = pytest.importorskip("pyarrow", reason="pip install 'camlens[ray]' (the test command installs it)")
pytest.importorskip("ray", reason="pip install 'camlens[ray]' (the test command installs it)")

from camlens.distributed import SettingsMismatch, Shards
from camlens.distributed.shards import RunSettings
from camlens.distributed.workers import EXPLAIN_COLUMNS


def _row(image: str, method: str = "gradcam", error: str | None = None) -> dict:
    return {"id": image, "file": image, "class": 24, "class_name": "great grey owl", "score": 1.5,
            "probability": 0.25, "method": method, "layer": "_head_act", "map": [0.5, 1.25, 0.0, 3.0],
            "map_shape": [2, 2], "worker": 1, "error": error}


def test_shards_hold_their_rows_and_their_ids_say_what_is_done(tmp_path):
    shards = Shards(tmp_path, EXPLAIN_COLUMNS)
    shards.write([_row("a.jpg"), _row("a.jpg", "layercam")])
    shards.write([{"id": "b.jpg", "file": "b.jpg", "worker": 1, "error": "b.jpg: not an image"}])
    again = Shards(tmp_path, EXPLAIN_COLUMNS)  # a resumed run reads what is done
    assert again.done == {"a.jpg"} and again.failed == {"b.jpg"}  # a failed photo is tried again
    table = again.table()
    assert table.num_rows == 3 and table.schema.field("map").type.value_type == pyarrow.float16()
    assert table.column("map").to_pylist()[0] == [0.5, 1.25, 0.0, 3.0]
    assert again.table(["id", "error"]).column("error").to_pylist() == [None, None, "b.jpg: not an image"]


def test_a_write_killed_half_way_leaves_no_shard_and_is_cleared_next_time(tmp_path):
    (tmp_path / ".part-abc-000001.parquet.123.partial").write_bytes(b"PAR1 half a file")
    reader = Shards(tmp_path, EXPLAIN_COLUMNS)  # only reading: another run's half-written file may be in progress
    assert reader.done == set() and list(tmp_path.glob(".*partial"))
    shards = Shards(tmp_path, EXPLAIN_COLUMNS, lock=True)  # the run writing here clears it
    assert shards.done == set() and not list(tmp_path.glob(".*partial"))
    shards.close()
    assert Shards(tmp_path, EXPLAIN_COLUMNS).table().num_rows == 0


def test_a_run_resumes_only_with_the_settings_it_was_started_with(tmp_path):
    RunSettings(tmp_path, {"model": "efficientnet-lite0", "methods": ["gradcam"]}, resume=True)
    RunSettings(tmp_path, {"model": "efficientnet-lite0", "methods": ["gradcam"]}, resume=True)
    with pytest.raises(SettingsMismatch, match=r"other settings \(methods\)"):
        RunSettings(tmp_path, {"model": "efficientnet-lite0", "methods": ["layercam"]}, resume=True)
    RunSettings(tmp_path, {"model": "efficientnet-lite0", "methods": ["layercam"]}, resume=False)  # starting over
    assert json.loads((tmp_path / "run.json").read_text())["settings"]["methods"] == ["layercam"]
