"""Datasets and ``camlens evaluate``: loading the shared data's CSVs and XML, incremental results,
resuming a killed run, the summary."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from camlens.cli import main
from camlens.data import load_dataset
from camlens.evaluate import read_results, summarize

from support import SAMPLE_IMAGES, kill_camlens_when, photo_dataset


def test_imagenet_val_bbox_annotations_load_directly(shared_data):
    samples = load_dataset(shared_data("imagenet_val_bbox/annotations.csv"))
    assert len(samples) == 21 and sum(len(s.boxes) for s in samples) == 27
    assert all(s.path.is_file() and s.label is not None for s in samples)
    paddle = next(s for s in samples if s.id.endswith("ILSVRC2012_val_00008855.JPEG"))
    assert paddle.label == 693 and paddle.boxes_of(693)[1] == (204.0, 0.0, 217.0, 104.0)


def test_imagenet_sample_labels_load_directly(shared_data):
    samples = load_dataset(shared_data("imagenet_sample_1000/labels.csv"))
    assert len(samples) == 1000 and sorted(s.label for s in samples) == list(range(1000))
    assert samples[0].path.name == "n01440764_tench.JPEG" and samples[0].boxes == ()


def test_voc_xml_with_wordnet_ids(tmp_path):
    (tmp_path / "a.xml").write_text(
        "<annotation><filename>a.jpg</filename><object><name>n01440764</name><bndbox><xmin>1</xmin><ymin>2</ymin>"
        "<xmax>30</xmax><ymax>40</ymax></bndbox></object><object><name>n01443537</name><bndbox><xmin>5</xmin>"
        "<ymin>6</ymin><xmax>7</xmax><ymax>8</ymax></bndbox></object></annotation>")
    (sample,) = load_dataset(tmp_path)
    assert sample.path == tmp_path / "a.jpg" and sample.label == 0
    assert sample.boxes == ((0, (1.0, 2.0, 30.0, 40.0)), (1, (5.0, 6.0, 7.0, 8.0)))


def test_bad_dataset_files_say_what_is_wrong(tmp_path):
    (tmp_path / "x.csv").write_text("picture,label\na.jpg,3\n")
    with pytest.raises(ValueError, match="no image column.*found picture, label"):
        load_dataset(tmp_path / "x.csv")
    (tmp_path / "y.csv").write_text("file,label\na.jpg,three\n")
    with pytest.raises(ValueError, match="line 2"):
        load_dataset(tmp_path / "y.csv")
    (tmp_path / "b.xml").write_text("<annotation><filename>b.jpg</filename><object><name>zebra</name></object></annotation>")
    with pytest.raises(ValueError, match="unknown object name 'zebra'"):
        load_dataset(tmp_path)


ARGS = ["--methods", "gradcam,xgradcam", "--metrics", "faithfulness,axioms,localization", "--steps", "4",
        "--batch-size", "16", "--images-per-step", "1"]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, lite0):
    out = tmp_path_factory.mktemp("uninterrupted")
    assert main(["evaluate", str(photo_dataset(out)), "--out", str(out), *ARGS]) == 0
    return out


def test_evaluate_writes_results_summary_and_curves(uninterrupted):
    records = read_results(uninterrupted / "results.jsonl")
    assert len(records) == 3 * 2
    for record in records:
        assert 0 <= record["average_drop"] <= 1 and len(record["deletion_curve"]) == 5
        assert record["conservation_error"] >= 0 and record["localization_error_top1"] in (0.0, 1.0)
        assert 0 <= record["energy_pointing_game"] <= 1
    summary = json.loads((uninterrupted / "summary.json").read_text())
    assert {row["method"] for row in summary["rows"]} == {"gradcam", "xgradcam"}
    table = (uninterrupted / "summary.md").read_text()
    assert "average_drop ↓" in table and "insertion_auc ↑" in table and "**" in table
    assert (uninterrupted / "curves.png").stat().st_size > 0 and (uninterrupted / "summary.csv").exists()


def test_a_killed_evaluation_resumes_to_the_same_results(tmp_path, uninterrupted):
    dataset = photo_dataset(tmp_path)
    results = tmp_path / "results.jsonl"
    kill_camlens_when(["evaluate", str(dataset), "--out", str(tmp_path), *ARGS], results, lines=2, poll=0.05)
    written = read_results(results)  # the torn last line is cut off here
    assert 2 <= len(written) < 6
    assert main(["evaluate", str(dataset), "--out", str(tmp_path), *ARGS]) == 0
    resumed = read_results(results)
    assert resumed[: len(written)] == written  # what was written stays, nothing duplicated
    key = lambda r: (r["id"], r["method"])  # noqa: E731
    expected = read_results(uninterrupted / "results.jsonl")
    assert sorted(map(key, resumed)) == sorted(map(key, expected))
    for a, b in zip(sorted(resumed, key=key), sorted(expected, key=key)):
        assert a.keys() == b.keys()
        for name in a:
            exact = isinstance(b[name], (str, type(None))) or name == "groups"
            expected_value = b[name] if exact else pytest.approx(b[name], rel=1e-5, abs=1e-6)
            assert a[name] == expected_value, name


def test_summary_confidence_interval_and_best_by_direction():
    records = [{"id": str(i), "method": m, "average_drop": v, "insertion_auc": v}
               for i, (a, b) in enumerate([(0.2, 0.4), (0.4, 0.6), (0.6, 0.8)]) for m, v in (("a", a), ("b", b))]
    summary = summarize(records)
    mean, half, n = summary.cells[("a", "average_drop")]
    assert mean == pytest.approx(0.4) and n == 3
    assert half == pytest.approx(4.302652729911275 * 0.2 / 3 ** 0.5)  # t(0.975, 2) · sd / √n
    assert summary.best("average_drop") == ("a",) and summary.best("insertion_auc") == ("b",)


def test_summary_marks_every_method_tied_at_the_printed_precision():
    means = (("cam", 0.5712), ("gradcam", 0.57118), ("lift", 0.5))
    records = [{"id": "0", "method": m, "insertion_auc": v} for m, v in means]
    summary = summarize(records)
    assert summary.best("insertion_auc") == ("cam", "gradcam")
    assert summary.markdown().count("**0.571") == 2


def test_resuming_under_another_protocol_is_refused(tmp_path, uninterrupted, capsys):
    out = tmp_path / "copy"
    out.mkdir()
    for name in ("results.jsonl", "protocol.json"):
        (out / name).write_bytes((uninterrupted / name).read_bytes())
    dataset = photo_dataset(tmp_path)
    changed = [arg if arg != "4" else "8" for arg in ARGS]  # --steps 8
    assert main(["evaluate", str(dataset), "--out", str(out), *changed]) == 2
    assert "holds results of another run (protocol.steps differ)" in capsys.readouterr().err
    assert len(read_results(out / "results.jsonl")) == 6  # nothing lost


def test_an_unreadable_image_is_reported_and_the_others_evaluated(tmp_path, lite0, capsys):
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")
    dataset = tmp_path / "mixed.csv"
    dataset.write_text(f"file,label\n{tmp_path / 'broken.jpg'},1\n{SAMPLE_IMAGES / 'owl.jpg'},24\n")
    out = tmp_path / "out"
    assert main(["evaluate", str(dataset), "--out", str(out), "--methods", "gradcam", "--steps", "2"]) == 1
    captured = capsys.readouterr()
    assert "1 image(s) could not be read" in captured.err and "broken.jpg" in captured.out
    records = read_results(out / "results.jsonl")
    assert [("error" in r) for r in records] == [True, False]
    assert summarize(records).cells[("gradcam", "average_drop")][2] == 1


def test_diagnosis_pictures_only_for_misclassified_images(tmp_path, lite0):
    from PIL import Image

    dataset = tmp_path / "d.csv"  # the owl labelled as a macaw (88): misclassified; the parrot is a macaw
    rows = [f"{SAMPLE_IMAGES / name},88,0,0,{Image.open(SAMPLE_IMAGES / name).width},10"
            for name in ("owl.jpg", "parrot.jpg")]
    dataset.write_text("file,label,x0,y0,x1,y1\n" + "\n".join(rows) + "\n")
    out = tmp_path / "out"
    assert main(["evaluate", str(dataset), "--out", str(out), "--methods", "gradcam,liftcam", "--metrics",
                 "localization", "--diagnose"]) == 0
    predicted = {Path(r["id"]).stem: r["predicted"] for r in read_results(out / "results.jsonl")}
    assert predicted["parrot"] == 88 and predicted["owl"] != 88
    assert [p.name for p in (out / "diagnosis").iterdir()] == ["owl.png"]
    picture = Image.open(out / "diagnosis" / "owl.png")
    assert picture.width > picture.height  # photo, then a column per method: predicted above true


def test_evaluate_usage_errors(tmp_path, capsys):
    dataset = photo_dataset(tmp_path)
    assert main(["evaluate", str(dataset), "--metrics", "beauty", "--out", str(tmp_path)]) == 2
    assert "unknown metric group(s) beauty" in capsys.readouterr().err
    assert main(["evaluate", str(tmp_path / "missing.csv"), "--out", str(tmp_path)]) == 2
    assert "cannot load the dataset" in capsys.readouterr().err
    (tmp_path / "labels.csv").write_text(f"file,label\n{SAMPLE_IMAGES / 'owl.jpg'},24\n")
    assert main(["evaluate", str(tmp_path / "labels.csv"), "--metrics", "localization", "--out", str(tmp_path)]) == 2
    assert "localization needs labelled images with boxes or masks" in capsys.readouterr().err
    assert main(["evaluate", str(dataset), "--steps", "0", "--out", str(tmp_path)]) == 2
    assert "steps must be at least 1, not 0" in capsys.readouterr().err
    assert main(["evaluate", str(dataset), "--box-threshold", "1.5", "--out", str(tmp_path)]) == 2
    assert "box_threshold must lie in (0, 1], not 1.5" in capsys.readouterr().err


def test_images_measured_together_give_the_records_of_images_measured_one_by_one(tmp_path, uninterrupted):
    """Grouping images into one explain call and one stream of perturbed forwards changes no number."""
    arguments = [a if a != "1" else "3" for a in ARGS]  # --images-per-step 3: the three photos at once
    assert arguments[-1] == "3"
    assert main(["evaluate", str(photo_dataset(tmp_path)), "--out", str(tmp_path), *arguments]) == 0
    key = lambda r: (r["id"], r["method"])  # noqa: E731
    together = sorted(read_results(tmp_path / "results.jsonl"), key=key)
    alone = sorted(read_results(uninterrupted / "results.jsonl"), key=key)
    assert [key(r) for r in together] == [key(r) for r in alone]
    for a, b in zip(together, alone):
        assert a.keys() == b.keys()
        for name in a:
            exact = isinstance(b[name], (str, type(None), int)) or name == "groups"
            expected = b[name] if exact else pytest.approx(b[name], rel=1e-4, abs=1e-5)
            assert a[name] == expected, (key(a), name)


def test_resuming_with_another_dataset_or_weights_is_refused_saying_what_differs(tmp_path, uninterrupted, capsys):
    out = tmp_path / "copy"
    out.mkdir()
    for name in ("results.jsonl", "protocol.json"):
        (out / name).write_bytes((uninterrupted / name).read_bytes())
    fewer = tmp_path / "fewer.csv"
    fewer.write_text("\n".join(photo_dataset(tmp_path).read_text().splitlines()[:3]) + "\n")  # two of the three
    assert main(["evaluate", str(fewer), "--out", str(out), *ARGS]) == 2
    assert "(dataset, images differ)" in capsys.readouterr().err
    assert main(["evaluate", str(photo_dataset(tmp_path)), "--out", str(out), *ARGS, "--methods", "gradcam"]) == 2
    assert "methods (some removed) differ" in capsys.readouterr().err


def test_a_resume_with_added_methods_and_groups_computes_only_those(tmp_path, lite0):
    dataset = photo_dataset(tmp_path)
    base = ["--steps", "4", "--batch-size", "16", "--out", str(tmp_path / "run")]
    assert main(["evaluate", str(dataset), *base, "--methods", "gradcam", "--metrics", "axioms"]) == 0
    results = tmp_path / "run" / "results.jsonl"
    first = read_results(results)
    assert len(first) == 3 and all(r["groups"] == ["axioms"] for r in first)
    assert main(["evaluate", str(dataset), *base, "--methods", "gradcam,xgradcam", "--metrics", "axioms,faithfulness"]) == 0
    added = read_results(results)[3:]
    assert read_results(results)[:3] == first  # nothing rewritten
    # gradcam lacked faithfulness only, xgradcam everything: 3 + 3 new records, nothing else
    assert sorted((r["method"], tuple(r["groups"])) for r in added) == \
        [("gradcam", ("axioms", "faithfulness"))] * 3 + [("xgradcam", ("axioms", "faithfulness"))] * 3
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    cells = {(row["method"], row["metric"]): row["n"] for row in summary["rows"]}
    assert cells[("gradcam", "conservation_error")] == 3 and cells[("xgradcam", "deletion_auc")] == 3
    assert main(["evaluate", str(dataset), *base, "--methods", "gradcam,xgradcam", "--metrics", "axioms,faithfulness"]) == 0
    assert len(read_results(results)) == 9  # all there: a third run computes nothing


def test_an_image_that_failed_is_tried_again_on_resume(tmp_path, lite0):
    late = tmp_path / "late.jpg"
    dataset = tmp_path / "labels.csv"
    dataset.write_text(f"file,label\n{SAMPLE_IMAGES / 'owl.jpg'},24\n{late},88\n")
    arguments = ["evaluate", str(dataset), "--out", str(tmp_path / "run"), "--methods", "gradcam", "--metrics", "axioms"]
    assert main(arguments) == 1  # the late photo is not there yet
    late.symlink_to(SAMPLE_IMAGES / "parrot.jpg")
    assert main(arguments) == 0
    summary = (tmp_path / "run" / "summary.md").read_text()
    assert "could not be evaluated" not in summary and "\n2 images" in summary


def test_an_added_group_does_not_redo_the_faithfulness_forwards(tmp_path, lite0):
    dataset = photo_dataset(tmp_path)
    base = ["--steps", "4", "--batch-size", "16", "--out", str(tmp_path / "run"), "--methods", "gradcam"]
    assert main(["evaluate", str(dataset), *base, "--metrics", "faithfulness"]) == 0
    assert main(["evaluate", str(dataset), *base, "--metrics", "faithfulness,axioms"]) == 0
    added = read_results(tmp_path / "run" / "results.jsonl")[3:]
    assert len(added) == 3 and all(r["groups"] == ["axioms"] and "deletion_auc" not in r for r in added)
