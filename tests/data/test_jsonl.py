"""Resumable JSON-lines runs: a step that fails keeps what the steps before it wrote, and the
next run does only what is left."""

from dataclasses import dataclass

import pytest

from camlens.data import RunMismatch, read_jsonl, read_records, resume_records


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
    assert [r["id"] for r in read_jsonl(path) if "id" in r] == ["0", "1", "2", "3"]

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


def squares(group):
    return [{"id": item.id, "square": int(item.id) ** 2} for item in group]


def test_a_step_cut_short_is_done_again(tmp_path):
    """A step writes its records and then a line naming its items, in one append: records whose
    step has no such line (a run killed mid-write) are dropped and their items done again."""
    path = tmp_path / "records.jsonl"
    items = [Item(str(i)) for i in range(4)]
    resume_records(path, items[:2], squares, per_step=2, progress=False)
    with open(path, "a", encoding="utf-8") as handle:     # the next step's first record, not its marker
        handle.write('{"id": "2", "square": -1}\n')
    records = resume_records(path, items, squares, per_step=2, progress=False)
    assert [(r["id"], r["square"]) for r in records] == [("0", 0), ("1", 1), ("2", 4), ("3", 9)]


def test_resuming_with_other_settings_is_refused_and_only_the_items_asked_for_come_back(tmp_path):
    path = tmp_path / "records.jsonl"
    items = [Item(str(i)) for i in range(3)]
    resume_records(path, items, squares, settings={"model": "a", "epsilons": [1, 2]}, progress=False)
    with pytest.raises(RunMismatch, match="another run \\(epsilons, model differ\\).*--restart"):
        resume_records(path, items, squares, settings={"model": "b", "epsilons": [1]}, progress=False)
    assert [r["id"] for r in resume_records(path, items[1:], squares, settings={"model": "a", "epsilons": [1, 2]},
                                            progress=False)] == ["1", "2"]
    assert len(resume_records(path, items, squares, settings={"model": "b"}, resume=False, progress=False)) == 3


@pytest.mark.parametrize("ids, message", [(["a", "b", "a"], "'a' is there more than once"), (["a", ""], "non-empty")])
def test_items_need_distinct_ids(tmp_path, ids, message):
    with pytest.raises(ValueError, match=message):
        resume_records(tmp_path / "r.jsonl", [Item(i) for i in ids], squares, progress=False)


def test_a_run_that_did_nothing_does_not_hold_the_folder(tmp_path):
    """A first run that fails in its first step (a wrong layer, say) leaves no result: the next
    run, with other settings, starts rather than being refused."""
    path = tmp_path / "records.jsonl"

    def broken(group):
        raise RuntimeError("wrong layer")

    with pytest.raises(RuntimeError):
        resume_records(path, [Item("0")], broken, settings={"layer": "oops"}, progress=False)
    assert len(resume_records(path, [Item("0")], squares, settings={"layer": "right"}, progress=False)) == 1


def test_files_of_older_versions_and_unreadable_settings_are_refused_not_erased(tmp_path):
    path = tmp_path / "records.jsonl"
    path.write_text('{"id": "0", "square": 0}\n')                  # records, no step marker
    with pytest.raises(RunMismatch, match="older camlens.*--restart"):
        resume_records(path, [Item("0")], squares, progress=False)
    assert path.read_text() == '{"id": "0", "square": 0}\n'        # untouched
    path.unlink()
    resume_records(path, [Item("0")], squares, settings={"a": 1}, progress=False)
    (tmp_path / "records.settings.json").write_text('{"a": ')
    with pytest.raises(RunMismatch, match="cannot be read"):
        resume_records(path, [Item("0")], squares, settings={"a": 1}, progress=False)


def test_read_records_leaves_out_markers_and_steps_cut_short(tmp_path):
    path = tmp_path / "records.jsonl"
    resume_records(path, [Item("0"), Item("1")], squares, per_step=1, progress=False)
    with open(path, "a", encoding="utf-8") as handle:
        handle.write('{"id": "2", "square": 4}\n')
    before = path.read_text()
    assert [r["id"] for r in read_records(path)] == ["0", "1"]
    assert path.read_text() == before and read_records(tmp_path / "none.jsonl") == []
