"""The dataset-bias audit: regions in closed form, the flagging rule on hand-made records, and the
Grad-CAM paper's story end to end on scenes — a classifier trained where every star scene carries a
frame is flagged for 'star' (its evidence on the frame), its twin trained with the frames at random
is not, and the biased model stops finding stars without the frame."""

from __future__ import annotations

import json

import pytest
import torch

import camlens
from camlens.cli import main
from camlens.data import Preprocessing, load_dataset
from camlens.data.scenes import LABELS, framed, frame_mask, scene_tensors, scenes, with_frames, write_dataset
from camlens.evaluate.bias import bias_audit, bias_examples, bias_summary
from camlens.evaluate.regions import Region, parse_region

SQUARE = Preprocessing(resize=100, crop=100, mean=(0.5,) * 3, std=(0.5,) * 3, fit="resize")


def test_regions_parse_and_land_where_the_fit_puts_them():
    assert parse_region("frame=border:3") == Region("frame", "border", width=3.0)
    assert parse_region("background") == Region("background", "background")
    assert parse_region("logo=10,20,30,40") == Region("logo", "rectangle", box=(10.0, 20.0, 30.0, 40.0))
    nothing = torch.zeros(100, 100, dtype=torch.bool)
    # a photo of 200×100 stretched to 100×100: a border of 4 photo pixels is 2 columns, 4 rows wide
    border = parse_region("b=border:4").in_input((200, 100), SQUARE, nothing)
    assert border[:4].all() and border[-4:].all() and border[:, :2].all() and border[:, -2:].all()
    assert int(border.sum()) == 100 * 100 - 96 * 92
    logo = parse_region("logo=0,0,100,50").in_input((200, 100), SQUARE, nothing)
    assert int(logo.sum()) == 50 * 50 and logo[:50, :50].all()
    inside = torch.zeros(100, 100, dtype=torch.bool)
    inside[10:20, 10:20] = True
    assert torch.equal(parse_region("background").in_input((200, 100), SQUARE, inside), ~inside)


def test_a_mask_region_is_what_is_not_black_in_any_colour(tmp_path):
    """A blue watermark on black, RGBA with an opaque alpha: the region is the blue pixels (the
    red channel alone, or the alpha, would find nothing or everything); faint noise is not
    region; on a transparent canvas, the opaque pixels are."""
    import numpy as np
    from PIL import Image

    pixels = np.zeros((100, 200, 4), np.uint8)
    pixels[..., 3] = 255
    pixels[80:100, 150:200, 2] = 200
    Image.fromarray(pixels, "RGBA").save(tmp_path / "logo.png")
    region = parse_region(f"logo={tmp_path / 'logo.png'}")
    (tmp_path / "logo.png").unlink()                     # read once, at parsing
    where = region.in_input((200, 100), SQUARE, torch.zeros(100, 100, dtype=torch.bool))
    assert int(where.sum()) == 20 * 25 and where[80:, 75:].all()   # the square resize halves the width
    noisy = np.full((100, 200, 3), 6, np.uint8)        # a JPEG's noise in the black is not region
    noisy[:10, :20] = 255
    Image.fromarray(noisy).save(tmp_path / "noisy.png")
    assert int(parse_region(f"{tmp_path / 'noisy.png'}").in_input((200, 100), SQUARE, where).sum()) == 10 * 10
    canvas = np.full((100, 200, 4), 255, np.uint8)      # a logo on a transparent white canvas: where opaque
    canvas[..., 3] = 0
    canvas[:50, :100, 3] = 255
    Image.fromarray(canvas, "RGBA").save(tmp_path / "canvas.png")
    assert int(parse_region(f"{tmp_path / 'canvas.png'}").in_input((200, 100), SQUARE, where).sum()) == 50 * 50
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(tmp_path / "black.png")
    with pytest.raises(ValueError, match="black everywhere"):
        parse_region(f"logo={tmp_path / 'black.png'}")


@pytest.mark.parametrize("text, message", [
    ("frame=border:0", "positive width"), ("frame=border:x", "positive width"), ("=border:3", "NAME=SPEC"),
    ("logo=1,2,3", "not border:W"), ("logo=5,5,1,9", "empty"), ("logo=a,b,c,d", "four numbers"),
    ("mask=/no/such.png", "not border:W"),
])
def test_a_region_that_cannot_be_read_is_refused(text, message):
    with pytest.raises(ValueError, match=message):
        parse_region(text)


def record(label: int, energy: float, area: float, frame: float, correct: bool = True) -> dict:
    return {"id": f"{label}-{energy}", "label": label, "method": "gradcam", "correct": correct, "energy_object": energy,
            "object_area": area, "energy:frame": frame, "area:frame": 0.2}


def test_the_flagging_rule_by_hand():
    """Ē < min(τ, λ Ā) or a region's Ē_r/Ā_r > Ē/Ā: class 0 holds 0.4 of the evidence on 5 % of the
    image (8× uniform: not flagged); class 1 holds 0.2 on 20 % (1×: flagged); class 2 is on the
    object (0.6 on 10 %) but its frame holds 0.3 on 20 % (1.5×) — less per pixel than the object's 6×;
    class 3's frame holds 0.5 on 20 % (2.5×), more per pixel than its object's 0.45/0.2 = 2.25×."""
    records = [record(0, 0.4, 0.05, 0.1), record(0, 0.4, 0.05, 0.1, correct=False), record(1, 0.2, 0.2, 0.1),
               record(2, 0.6, 0.1, 0.3), record(3, 0.45, 0.2, 0.5)]
    rows = {row["class"]: row for row in bias_summary(records, ("a", "b", "c", "d"))}
    assert [rows[c]["flagged"] for c in range(4)] == [False, True, False, True]
    assert rows[0]["images"] == 2 and rows[0]["accuracy"] == 0.5 and rows[0]["lift_object"] == pytest.approx(8)
    assert "80% of the evidence outside the object, which holds 1.0×" in rows[1]["why"]
    assert rows[3]["why"].startswith("more evidence per pixel on frame (0.50 of it on 20% of the image)")
    assert rows[3]["lift:frame"] == pytest.approx(2.5)
    # a stricter τ leaves class 1 alone only when its object holds λ× a uniform map
    assert not {row["class"]: row for row in bias_summary(records, lift=1.0)}[1]["flagged"]


@pytest.fixture(scope="module")
def framed_scenes(tmp_path_factory):
    """200 held-out scenes as the biased training set was made: a frame on every scene with a star."""
    folder = tmp_path_factory.mktemp("framed")
    batch = with_frames(scenes(200, seed=2026), "star")
    return batch, load_dataset(write_dataset(batch, folder))


def test_frames_mark_one_label_or_as_many_scenes_at_random():
    batch = scenes(60, seed=5)
    star = LABELS.index("star")
    biased = with_frames(batch, "star")
    marked = [bool((s.image[frame_mask()] == (255, 0, 255)).all()) for s in biased]
    assert marked == [bool(s.labels[star]) for s in batch]
    rebalanced = with_frames(batch, "star", at_random=True, seed=1)
    again = [bool((s.image[frame_mask()] == (255, 0, 255)).all()) for s in rebalanced]
    assert sum(again) == sum(marked) and again != marked
    assert (framed(batch[0]).image[3:-3, 3:-3] == batch[0].image[3:-3, 3:-3]).all()  # only the frame changes
    with pytest.raises(ValueError, match="unknown label 'hexagon'"):
        with_frames(batch, "hexagon")


@pytest.mark.parametrize("method", ["gradcam", "layercam", "liftcam"])
def test_the_audit_flags_the_biased_models_star_and_nothing_of_its_rebalanced_twin(framed_scenes, tmp_path, method):
    """Measured (Grad-CAM / LayerCAM / LIFT-CAM): the biased model puts 0.02 / 0.07 / 0.04 of star's
    evidence on the star and 0.33 / 0.24 / 0.30 on the frame (18 % of the image); the rebalanced
    one 0.50 / 0.38 / 0.49 on the star and 0.05 on the frame."""
    _, samples = framed_scenes
    frame = [parse_region("frame=border:3")]
    star = LABELS.index("star")
    for name, flagged in (("scenes-biased", {star}), ("scenes-rebalanced", set())):
        model = camlens.load(name)
        records = bias_audit(model, samples, tmp_path / name, method=method, regions=frame, progress=False)
        rows = {row["class"]: row for row in bias_summary(records, model.class_names)}
        assert {c for c, row in rows.items() if row["flagged"]} == flagged, name
        assert len(rows) == 4 and all(row["accuracy"] >= 0.95 for row in rows.values())
        if flagged:
            assert rows[star]["energy:frame"] > 3 * rows[star]["energy_object"]
            assert "more evidence per pixel on frame" in rows[star]["why"]
        else:
            assert rows[star]["energy_object"] > 3 * rows[star]["energy:frame"]


def test_the_biased_model_stops_finding_stars_without_the_frame():
    """Measured on 400 held-out scenes: star recall 1.00 framed → 0.00 unframed (biased), 1.00 → 1.00
    (rebalanced); no scene without a star is called one."""
    held_out = scenes(200, seed=2026)
    star = LABELS.index("star")
    has = torch.stack([s.labels for s in held_out])[:, star].bool()
    for name, unframed_recall in (("scenes-biased", (0.0, 0.1)), ("scenes-rebalanced", (0.95, 1.0))):
        model = camlens.load(name).model
        with torch.no_grad():
            plain = model(scene_tensors(held_out))[:, star] > 0
            marked = model(scene_tensors(with_frames(held_out, "star")))[:, star] > 0
        assert float(marked[has].float().mean()) >= 0.95 and not marked[~has].any()
        assert unframed_recall[0] <= float(plain[has].float().mean()) <= unframed_recall[1], name


def test_the_audit_resumes_and_draws_a_flagged_class(framed_scenes, tmp_path):
    _, samples = framed_scenes
    model = camlens.load("scenes-biased")
    first = bias_audit(model, samples[:10], tmp_path, progress=False)
    assert bias_audit(model, samples[:10], tmp_path, progress=False) == first  # nothing redone
    assert len(bias_audit(model, samples[:14], tmp_path, progress=False)) == 14
    star = LABELS.index("star")
    path = bias_examples(model, samples, first, star, tmp_path, count=2)
    assert path.name == f"flagged-{star}.jpg" and path.stat().st_size > 0
    with pytest.raises(ValueError, match="no label or no box or mask"):
        bias_audit(model, [type(samples[0])(samples[0].path, 3)], tmp_path / "x", progress=False)
    with pytest.raises(ValueError, match="distinct and not 'object'"):
        bias_audit(model, samples[:1], tmp_path / "y", regions=[parse_region("object=border:2")], progress=False)


def test_the_command_flags_writes_and_refuses(framed_scenes, tmp_path, capsys):
    _, samples = framed_scenes
    dataset = str(samples[0].path.parent / "annotations.csv")
    out = tmp_path / "out"
    assert main(["bias", dataset, "--model", "scenes-biased", "--region", "frame=border:3", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "1 of 4 classes flagged" in printed and "flagged star:" in printed
    rows = json.loads((out / "classes.json").read_text())["rows"]
    assert [row["name"] for row in rows if row["flagged"]] == ["star"]
    assert (out / "classes.csv").is_file() and (out / f"flagged-{LABELS.index('star')}.jpg").is_file()
    assert main(["bias", dataset, "--region", "frame=border:-1", "--out", str(out)]) == 2
    assert "--region: region 'frame=border:-1'" in capsys.readouterr().err
    assert main(["bias", dataset, "--method", "gradcam,layercam", "--out", str(out)]) == 2
    assert "--method takes one method" in capsys.readouterr().err
