"""What a first real user hit (issue 17): outputs that overwrote each other, output folders that
failed with tracebacks, traps in the options, and messages that pointed the wrong way."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

import camlens
from camlens.cli import main

from support import SAMPLE_IMAGES

OWL = SAMPLE_IMAGES / "owl.jpg"


def test_outputs_mirror_the_input_tree_and_keep_the_extension(tmp_path, capsys):
    photos, other = tmp_path / "photos", tmp_path / "other"
    (photos / "sub").mkdir(parents=True)
    other.mkdir()
    for name in ("a.jpg", "a_1.jpg", "sub/a.jpg"):
        (photos / name).symlink_to(OWL)
    Image.open(OWL).save(photos / "a.png")
    (other / "a.jpg").symlink_to(SAMPLE_IMAGES / "parrot.jpg")
    out = tmp_path / "out"
    assert main(["explain", str(photos), str(other), "--out", str(out), "--methods", "gradcam"]) == 0
    assert "writes to a_jpg_2/, as another input is also named a.jpg" in capsys.readouterr().err
    manifest = json.loads((out / "manifest.json").read_text())
    folders = {image["file"]: image["outputs"][-1].rsplit("/", 1)[0] for image in manifest["images"]}
    assert folders == {str(photos / "a.jpg"): "a_jpg", str(photos / "a.png"): "a_png",
                       str(photos / "a_1.jpg"): "a_1_jpg", str(photos / "sub" / "a.jpg"): "sub/a_jpg",
                       str(other / "a.jpg"): "a_jpg_2"}
    parrot = torch.load(out / "a_jpg_2" / "maps.pt", weights_only=True)["classes"]
    assert parrot.tolist() == [88]  # the parrot's own folder, not overwritten by an owl


def test_an_earlier_run_is_never_overwritten_silently(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["explain", str(OWL), "--out", str(out), "--methods", "gradcam"]) == 0
    assert main(["explain", str(SAMPLE_IMAGES / "parrot.jpg"), "--out", str(out), "--methods", "gradcam"]) == 2
    assert "holds an earlier run (manifest.jsonl): --resume continues it, --overwrite replaces it" in capsys.readouterr().err
    assert (out / "owl_jpg" / "maps.pt").is_file()
    assert main(["explain", str(SAMPLE_IMAGES / "parrot.jpg"), "--out", str(out), "--methods", "gradcam",
                 "--overwrite"]) == 0
    assert not (out / "owl_jpg" / "maps.pt").exists()  # the replaced run's files are gone, not left to mislead
    assert [file_name(i["file"]) for i in json.loads((out / "manifest.json").read_text())["images"]] == ["parrot.jpg"]


def file_name(file: str) -> str:
    return file.rsplit("/", 1)[-1]


def test_output_folder_failures_are_one_line_messages(tmp_path, capsys):
    a_file = tmp_path / "a_file"
    a_file.write_text("")
    assert main(["explain", str(OWL), "--out", str(a_file)]) == 2
    assert f"--out {a_file} is a file, not a folder" in capsys.readouterr().err
    assert main(["explain", str(OWL), "--out", "/sys/camlens-out"]) == 1  # not writable, even for root
    err = capsys.readouterr().err
    assert err.startswith("camlens: error: cannot write /sys/camlens-out") and "Traceback" not in err


def test_a_full_disk_is_a_one_line_message_and_the_manifest_keeps_what_was_done(tmp_path, capsys, monkeypatch):
    photos = tmp_path / "photos"
    photos.mkdir()
    for index in range(3):
        (photos / f"p{index}.jpg").symlink_to(OWL)
    saved = []
    original = Image.Image.save

    def save(self, target, *args, **kwargs):  # the disk fills up at the second photo's pictures
        if "p1_jpg" in str(target):
            raise OSError(28, "No space left on device", str(target))
        saved.append(target)
        return original(self, target, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "save", save)
    out = tmp_path / "out"
    assert main(["explain", str(photos), "--out", str(out), "--methods", "gradcam", "--batch-size", "1"]) == 1
    err = capsys.readouterr().err
    assert "camlens: error: cannot write" in err and "No space left on device" in err and "Traceback" not in err
    lines = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert [file_name(line["image"]["file"]) for line in lines[1:]] == ["p0.jpg"]  # consistent: the one finished


def test_a_layer_with_1x1_output_is_refused_naming_the_spatial_layers(tmp_path, capsys, lite0, lite0_batch):
    model, _ = lite0
    with pytest.raises(ValueError, match=r"outputs 1×1 maps .* Spatial layers, last first: _head_act \(1, 1280, 7, 7\)"):
        camlens.explain(model, lite0_batch[:1], layer="_avg_pooling")
    out = tmp_path / "out"
    assert main(["explain", str(OWL), "--out", str(out), "--layer", "_avg_pooling"]) == 2
    err = capsys.readouterr().err
    assert "1×1 maps" in err and "_head_act (1, 1280, 7, 7)" in err
    assert "`camlens layers efficientnet-lite0` lists every layer" in err and "layer_output_shapes" not in err
    assert not out.exists()  # a usage error leaves no empty output folder behind


def test_an_unknown_layer_points_at_the_layers_command(tmp_path, capsys):
    assert main(["explain", str(OWL), "--out", str(tmp_path / "out"), "--layer", "_head_akt"]) == 2
    err = capsys.readouterr().err
    assert "Did you mean '_head_act'" in err and "`camlens layers efficientnet-lite0`" in err
    assert "layer_output_shapes" not in err


@pytest.mark.parametrize("arguments,message", [
    (["--limit", "0"], "--limit must be at least 1, not 0"),
    (["--limit", "-19"], "--limit must be at least 1, not -19"),
    (["--batch-size", "0"], "--batch-size must be at least 1, not 0"),
    (["--images-per-step", "0"], "--images-per-step must be at least 1, not 0"),
])
def test_evaluate_counts_below_their_least_are_usage_errors(tmp_path, capsys, arguments, message):
    dataset = tmp_path / "labels.csv"
    dataset.write_text(f"file,label\n{OWL},24\n")
    assert main(["evaluate", str(dataset), "--out", str(tmp_path / "eval"), *arguments]) == 2
    assert message in capsys.readouterr().err


def test_method_names_in_any_case_and_comma_lists_in_python_and_targets(tmp_path, capsys, lite0, lite0_batch):
    model, _ = lite0
    explanation = camlens.explain(model, lite0_batch[:1], layer="_head_act", methods="GradCAM, XGradCAM")
    assert explanation.methods == ("gradcam", "xgradcam")
    out = tmp_path / "out"
    assert main(["explain", str(SAMPLE_IMAGES / "pets.jpg"), "--out", str(out), "--methods", "GRADCAM",
                 "--target", "whippet,Italian greyhound"]) == 0
    classes = json.loads((out / "manifest.json").read_text())["images"][0]["classes"]
    assert [c["name"] for c in classes] == ["whippet", "Italian greyhound"]


def test_help_has_no_doubled_percent_signs():
    for command in ("explain", "evaluate"):
        completed = subprocess.run([sys.executable, "-m", "camlens", command, "--help"], capture_output=True, text=True)
        assert completed.returncode == 0 and "%%" not in completed.stdout
    assert "95% CI" in completed.stdout


def test_guided_gradcam_pictures_line_up_with_the_photo(tmp_path):
    out = tmp_path / "out"
    assert main(["explain", str(SAMPLE_IMAGES / "parrot.jpg"), "--out", str(out), "--methods", "guided_gradcam",
                 "--format", "png"]) == 0
    record = json.loads((out / "manifest.json").read_text())["images"][0]
    picture = np.asarray(Image.open(out / record["outputs"][0])).astype(int)
    assert picture.shape[:2] == Image.open(SAMPLE_IMAGES / "parrot.jpg").size[::-1]  # the photo's own size
    x0, y0, x1, y1 = (round(v) for v in record["crop_box"])
    assert (picture[: y0 - 1] == 128).all() and (picture[y1 + 1:] == 128).all()  # outside the model's crop: zero
    assert (picture[y0 + 2: y1 - 2, x0 + 2: x1 - 2] != 128).any()


def test_evaluates_default_methods_are_the_fast_ones_and_the_help_names_the_slow():
    from camlens.cli import parser

    args = parser().parse_args(["evaluate", "labels.csv"])
    assert "scorecam" not in args.methods and "shapley" not in args.methods
    completed = subprocess.run([sys.executable, "-m", "camlens", "evaluate", "--help"], capture_output=True, text=True)
    assert "Slow: scorecam" in " ".join(completed.stdout.split())


def test_a_resume_keeps_each_explained_photos_folder(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "x.jpg").symlink_to(OWL)
    (tmp_path / "b" / "x.jpg").symlink_to(SAMPLE_IMAGES / "parrot.jpg")
    out = tmp_path / "out"
    assert main(["explain", str(tmp_path / "a" / "x.jpg"), "--out", str(out), "--methods", "gradcam"]) == 0
    assert main(["explain", str(tmp_path / "b" / "x.jpg"), "--out", str(out), "--methods", "gradcam", "--resume"]) == 0
    owl, parrot = (torch.load(out / folder / "maps.pt", weights_only=True)["classes"].tolist()
                   for folder in ("x_jpg", "x_jpg_2"))
    assert owl != [88] and parrot == [88]  # the owl's folder kept, the parrot in its own


def test_overwrite_checks_the_layer_before_removing_the_earlier_run(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["explain", str(OWL), "--out", str(out), "--methods", "gradcam"]) == 0
    assert main(["explain", str(OWL), "--out", str(out), "--overwrite", "--layer", "_avg_pooling"]) == 2
    assert "1×1 maps" in capsys.readouterr().err
    assert (out / "owl_jpg" / "maps.pt").is_file() and (out / "manifest.json").is_file()  # untouched


def test_a_folder_of_an_earlier_release_counts_as_an_earlier_run(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "manifest.json").write_text('{"images": []}')
    assert main(["explain", str(OWL), "--out", str(out)]) == 2
    assert "holds an earlier run (manifest.json)" in capsys.readouterr().err


def test_a_csv_list_without_an_image_column_is_a_usage_error(tmp_path, capsys):
    listing = tmp_path / "list.csv"
    listing.write_text("name,label\nowl.jpg,24\n")
    assert main(["explain", str(listing), "--out", str(tmp_path / "out")]) == 2
    assert "cannot read the list of images" in capsys.readouterr().err and not (tmp_path / "out").exists()
