"""Resumable JSON-lines runs: a step that fails keeps what the steps before it wrote, and the
next run does only what is left."""

from dataclasses import dataclass

import pytest

from camlens.data import read_jsonl, resume_records


@dataclass
class Item:
    id: str


def test_a_killed_run_resumes_after_its_last_complete_step(tmp_path):
    path = tmp_path / "out" / "records.jsonl"
    items = [Item(str(i)) for i in range(7)]
    seen: list[str] = []

    def failing(group):
        if group[0].id == "4":
            raise RuntimeError("killed")
        seen.extend(item.id for item in group)
        return [{"id": item.id, "square": int(item.id) ** 2} for item in group]

    with pytest.raises(RuntimeError, match="killed"):
        resume_records(path, items, failing, per_step=2, progress=False)
    assert [r["id"] for r in read_jsonl(path)] == ["0", "1", "2", "3"]

    def step(group):
        seen.extend(item.id for item in group)
        return [{"id": item.id, "square": int(item.id) ** 2} for item in group]

    records = resume_records(path, items, step, per_step=2, progress=False)
    assert seen == ["0", "1", "2", "3", "4", "5", "6"]            # nothing done twice
    assert [r["square"] for r in records] == [i * i for i in range(7)]
    assert len(resume_records(path, items, step, per_step=2, resume=False, progress=False)) == 7
    assert seen[7:] == [str(i) for i in range(7)]                  # resume=False starts afresh


def test_a_step_of_no_item_is_refused(tmp_path):
    with pytest.raises(ValueError, match="per_step"):
        resume_records(tmp_path / "r.jsonl", [Item("a")], lambda group: [], per_step=0)
