"""``camlens explain`` beyond classifiers: captions, questions, boxes and references on the scene
models, and the usage errors when an option does not fit the model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from camlens.cli import main
from camlens.models import faces
from camlens.data.scenes import scenes


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    """A scene with a red circle among other objects, saved as a PNG."""
    chosen = next(s for s in scenes(100, seed=8) if len(s.objects) >= 2
                  and any(o.shape == "circle" and o.colour == "red" for o in s.objects))
    path = tmp_path_factory.mktemp("scene") / "scene.png"
    chosen.pil().save(path)
    return chosen, path


def test_a_caption_gets_one_map_per_word(scene, tmp_path, capsys):
    _, path = scene
    out = tmp_path / "out"
    assert main(["explain", str(path), "--model", "scenes-captioner", "--caption", "a red circle",
                 "--methods", "gradcam,layercam", "--out", str(out)]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["caption"] == "a red circle"
    words = manifest["images"][0]["classes"]
    assert [(w["name"], w["position"]) for w in words] == [("a", 0), ("red", 1), ("circle", 2)]
    assert (out / "scene_png" / "layercam__01_red.jpg").is_file()
    maps = torch.load(out / "scene_png" / "maps.pt", weights_only=True)
    assert maps["positions"].tolist() == [0, 1, 2] and maps["maps"]["gradcam"].shape == (3, 64, 64)


def test_a_question_explains_the_answer(scene, tmp_path, capsys):
    chosen, path = scene
    out = tmp_path / "out"
    assert main(["explain", str(path), "--model", "scenes-vqa", "--question", "what colour is the circle ?",
                 "--out", str(out), "--methods", "gradcam"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["images"][0]["top5"][0]["name"] == "red"
    assert manifest["images"][0]["classes"][0]["name"] == "red"
    assert "1. red" in capsys.readouterr().out


def test_a_box_explains_its_detection_and_a_reference_the_match(scene, tmp_path):
    chosen, path = scene
    circle = next(o for o in chosen.objects if o.shape == "circle")
    box = ",".join(str(v) for v in circle.box) + ":circle"
    out = tmp_path / "boxes"
    assert main(["explain", str(path), "--model", "scenes-detector", "--box", box, "--methods", "gradcam",
                 "--out", str(out)]) == 0
    record = json.loads((out / "manifest.json").read_text())["images"][0]
    assert record["classes"][0]["name"] == "circle" and record["classes"][0]["position"] == 0
    assert any(d["name"] == "circle" for d in record["detections"])
    out = tmp_path / "reference"
    assert main(["explain", str(path), "--model", "scenes-classifier", "--reference", str(path),
                 "--layer", "backbone.layer3", "--methods", "gradcam", "--out", str(out)]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["layer"] == "model.backbone.layer3"  # the embedding wraps the model
    assert manifest["images"][0]["classes"][0]["score"] == pytest.approx(1.0, abs=1e-5)  # a photo matches itself


def test_a_photo_whose_box_is_not_detected_is_skipped_and_the_others_explained(scene, tmp_path, capsys):
    chosen, path = scene
    circle = next(o for o in chosen.objects if o.shape == "circle")
    empty = tmp_path / "empty.png"  # a scene's background with its one object painted over: nothing to detect
    lone = next(s for s in scenes(50, seed=3) if len(s.objects) == 1)
    blank = lone.image.copy()
    blank[lone.objects[0].mask] = blank[~lone.objects[0].mask].mean(axis=0).astype(blank.dtype)
    Image.fromarray(blank).save(empty)
    out = tmp_path / "out"
    assert "no detection matches" in explained_beside(path, empty, circle, out)
    assert "skipped" in capsys.readouterr().err and (out / "scene_png" / "maps.pt").is_file()


def explained_beside(scene: Path, other: Path, circle, out: Path) -> str:
    """Explain the scene and ``other`` with the scene's circle as ``--box``, in one batch: the
    scene is explained, ``other`` fails alone; returns why it failed."""
    box = ",".join(str(v) for v in circle.box) + ":circle"
    assert main(["explain", str(scene), str(other), "--model", "scenes-detector", "--box", box,
                 "--methods", "gradcam", "--batch-size", "2", "--out", str(out)]) == 1
    manifest = json.loads((out / "manifest.json").read_text())
    assert [Path(r["file"]).name for r in manifest["images"]] == ["scene.png"]
    assert [Path(f["file"]).name for f in manifest["failures"]] == [other.name]
    return manifest["failures"][0]["reason"]


@pytest.mark.parametrize("arguments, message", [
    (["--model", "efficientnet-lite0", "--caption", "a red circle"], "--caption needs a captioning model"),
    (["--model", "scenes-captioner", "--caption", "a purple circle"], "unknown word"),
    (["--model", "scenes-captioner", "--caption", "a red circle", "--target", "1"], "cannot be combined"),
    (["--model", "scenes-classifier", "--question", "what colour is the circle ?"], "--question needs a question"),
    (["--model", "scenes-detector", "--box", "1,2,3:circle"], "give X0,Y0,X1,Y1:LABEL"),
    (["--model", "scenes-detector", "--box", "30,2,10,40:circle"], "x1 < x0"),
    (["--model", "scenes-detector", "--box", "1,2,30,40:hexagon"], "unknown class name 'hexagon'"),
    (["--model", "scenes-detector", "--box", "0,0,2,2:star"], "no detection matches"),
    (["--model", "scenes-vqa"], "reads text as well as the image: give --question TEXT"),
    (["--model", "scenes-vqa", "--question", "what colour is the circle ?", "--box", "1,2,3,4:red"],
     "--question and --box cannot be combined"),
    (["--model", "scenes-detector", "--reference", "missing.png"], "--reference needs a model with an embedding"),
])
def test_options_that_do_not_fit_the_model_are_usage_errors(scene, tmp_path, capsys, arguments, message):
    _, path = scene
    assert main(["explain", str(path), *arguments, "--out", str(tmp_path / "x")]) == 2
    assert message in capsys.readouterr().err


def test_layers_and_models_commands_know_the_scene_models(capsys):
    assert main(["layers", "scenes-vqa"]) == 0  # a model of two inputs: run with an empty question
    out = capsys.readouterr().out
    assert "recommended: backbone.layer4" in out and "backbone.layer4.0" in out and "(1, 64, 32, 32)" in out
    assert main(["models"]) == 0
    assert any(line.split()[:3] == ["scenes-captioner", "yes", "captioning"] for line in capsys.readouterr().out.splitlines())


def test_a_photo_whose_crop_misses_the_box_fails_alone(scene, tmp_path):
    chosen, path = scene
    circle = next(o for o in chosen.objects if o.shape == "circle")
    wide = tmp_path / "wide.png"  # 64 px tall, 200 wide: the model's centre crop is x 68..132, the box is not in it
    canvas = Image.new("RGB", (200, 64), tuple(int(v) for v in chosen.image.reshape(-1, 3).mean(axis=0)))
    canvas.paste(chosen.pil(), (68, 0))
    canvas.save(wide)
    assert "lies outside the part of this 200×64 photo" in explained_beside(path, wide, circle, tmp_path / "out")


def test_a_face_detector_explains_its_map_inside_a_box_or_over_the_photo(shared_data, tmp_path, capsys):
    pytest.importorskip("facenet_pytorch", reason=faces.INSTALL)
    photo = shared_data("coral_test_images/grace_hopper.png")
    boxed, whole = tmp_path / "boxed", tmp_path / "whole"
    common = ["--model", "mtcnn-pnet", "--methods", "gradcam,layercam"]
    assert main(["explain", str(photo), *common, "--box", "177,113,352,328:face", "--out", str(boxed)]) == 0
    assert main(["explain", str(photo), *common, "--out", str(whole)]) == 0
    scores = []
    for out in (boxed, whole):
        record = json.loads((out / "manifest.json").read_text())["images"][0]
        assert [(c["index"], c["name"]) for c in record["classes"]] == [(0, "face")]
        scores.append(record["classes"][0]["score"])
    assert 0 < scores[0] < scores[1]  # the probability inside the face's box is part of the whole map's
    two = tmp_path / "two"
    assert main(["explain", str(photo), *common, "--box", "177,113,352,328:face", "--box", "0,400,100,500:face",
                 "--out", str(two)]) == 0
    rows = json.loads((two / "manifest.json").read_text())["images"][0]["classes"]
    assert [row["position"] for row in rows] == [0, 1] and rows[0]["score"] == pytest.approx(scores[0], rel=1e-5)


def test_a_box_too_small_for_a_photos_score_map_fails_that_photo_only(tmp_path, capsys):
    """The same --box on a small photo and a large one: on the large one it shrinks below one
    pixel of P-Net's map, and only that photo fails."""
    pytest.importorskip("facenet_pytorch", reason=faces.INSTALL)
    folder = tmp_path / "photos"
    folder.mkdir()
    Image.new("RGB", (100, 100), (200, 160, 140)).save(folder / "small.png")
    Image.new("RGB", (3000, 3000), (200, 160, 140)).save(folder / "large.png")
    out = tmp_path / "out"
    assert main(["explain", str(folder), "--model", "mtcnn-pnet", "--methods", "gradcam", "--box", "30,30,40,40:face",
                 "--out", str(out)]) == 1
    manifest = json.loads((out / "manifest.json").read_text())
    assert [Path(record["file"]).name for record in manifest["images"]] == ["small.png"]
    assert "large.png" in capsys.readouterr().err
