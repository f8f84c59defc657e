"""``camlens explain`` on many photos: streamed in batches, written as it goes, paginated, resumed
after a kill without redoing or losing a photo."""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image

from camlens.cli import main
from camlens.data import read_jsonl

from support import SAMPLE_IMAGES, kill_camlens_when

ARGS = ["--methods", "gradcam", "--batch-size", "2"]
SAMPLES = ("parrot.jpg", "owl.jpg", "hot_dog.jpg", "pets.jpg")


def photo_folder(folder, count: int):
    """``count`` photos (links to the four sample photos) in ``folder``, two levels deep."""
    (folder / "deeper").mkdir(parents=True)
    for index in range(count):
        place = folder if index % 2 else folder / "deeper"
        (place / f"p{index:02d}.jpg").symlink_to(SAMPLE_IMAGES / SAMPLES[index % len(SAMPLES)])
    return folder


def by_file(manifest: dict) -> dict[str, dict]:
    return {image["file"]: image for image in manifest["images"]}


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, lite0):
    folder = photo_folder(tmp_path_factory.mktemp("photos"), 60)
    out = tmp_path_factory.mktemp("uninterrupted")
    assert main(["explain", str(folder), "--out", str(out), *ARGS]) == 0
    return folder, out


def test_a_run_writes_a_line_per_photo_and_pages_of_at_most_fifty(uninterrupted):
    folder, out = uninterrupted
    lines = read_jsonl(out / "manifest.jsonl")
    assert "settings" in lines[0]["run"] and [len(line) for line in lines[1:]] == [1] * 60
    manifest = json.loads((out / "manifest.json").read_text())
    assert len(manifest["images"]) == 60 and manifest["overview"] == ["overview-001.png", "overview-002.png"]
    heights = [Image.open(out / page).height for page in manifest["overview"]]
    assert heights[0] > 4.5 * heights[1]  # 50 rows, then 10
    assert {image["file"] for image in manifest["images"]} == {str(p) for p in folder.rglob("*.jpg")}


def test_a_killed_run_resumes_without_redoing_or_losing_a_photo(tmp_path, uninterrupted, capsys):
    folder, expected_out = uninterrupted
    out = tmp_path / "out"
    log = out / "manifest.jsonl"
    kill_camlens_when(["explain", str(folder), "--out", str(out), *ARGS, "--batch-size", "1"], log, lines=4)
    written = read_jsonl(log)  # the torn last line is cut off here
    assert 4 <= len(written) < 61 and not (out / "manifest.json").exists()
    capsys.readouterr()

    assert main(["explain", str(folder), "--out", str(out), *ARGS, "--batch-size", "1", "--resume"]) == 0
    explained_now = [line for line in capsys.readouterr().out.splitlines() if " 1. " in line]
    assert len(explained_now) == 60 - (len(written) - 1)  # only the photos the killed run had not finished
    resumed = read_jsonl(log)
    assert resumed[:len(written)] == written  # what was written stays, nothing duplicated
    manifest, expected = (json.loads((o / "manifest.json").read_text()) for o in (out, expected_out))
    assert by_file(manifest).keys() == by_file(expected).keys()
    for file, image in by_file(manifest).items():
        assert [c["index"] for c in image["classes"]] == [c["index"] for c in by_file(expected)[file]["classes"]]
        assert image["classes"][0]["score"] == pytest.approx(by_file(expected)[file]["classes"][0]["score"], rel=1e-4)
    # the first page, which the killed run never finished, is whole again: 50 rows, as uninterrupted
    for page in expected["overview"]:
        assert Image.open(out / page).size == Image.open(expected_out / page).size


def test_resuming_with_other_settings_is_refused_saying_what_differs(tmp_path, capsys):
    out = tmp_path / "out"
    photo = str(SAMPLE_IMAGES / "owl.jpg")
    assert main(["explain", photo, "--out", str(out), "--methods", "gradcam"]) == 0
    assert main(["explain", photo, "--out", str(out), "--methods", "gradcam,layercam", "--resume"]) == 2
    err = capsys.readouterr().err
    assert "holds a run with other settings" in err and "methods: ['gradcam'] then, ['gradcam', 'layercam'] now" in err
    # a run on more photos with the same settings goes on, explaining only the new one
    assert main(["explain", photo, str(SAMPLE_IMAGES / "parrot.jpg"), "--out", str(out), "--methods", "gradcam",
                 "--resume"]) == 0
    printed = [line for line in capsys.readouterr().out.splitlines() if " 1. " in line]
    assert len(printed) == 1 and printed[0].startswith("parrot")
    assert len(json.loads((out / "manifest.json").read_text())["images"]) == 2


def test_large_photos_give_pictures_of_bounded_size_and_maps_of_the_full_photo(tmp_path, lite0):
    with Image.open(SAMPLE_IMAGES / "parrot.jpg") as image:  # 512×929, made 3000×5444
        image.resize((3000, 5444)).save(tmp_path / "large.jpg")
    out = tmp_path / "out"
    assert main(["explain", str(tmp_path / "large.jpg"), "--out", str(out), "--methods", "gradcam",
                 "--max-side", "1000", "--format", "png"]) == 0
    record = json.loads((out / "manifest.json").read_text())["images"][0]
    assert record["size"] == [3000, 5444]
    x0, y0, x1, y1 = record["crop_box"]  # in the file's pixels: the model's center crop of the full photo
    preprocessing = lite0[1]
    side = 3000 * preprocessing.crop / preprocessing.resize
    assert (x0 + x1) / 2 == pytest.approx(1500, abs=12) and (y0 + y1) / 2 == pytest.approx(2722, abs=12)
    assert x1 - x0 == pytest.approx(side, abs=12) and y1 - y0 == pytest.approx(side, abs=12)  # one input pixel
    with Image.open(out / record["outputs"][0]) as overlay:
        assert overlay.format == "PNG" and overlay.size == (551, 1000)


def test_photos_from_a_csv_list_and_a_pattern(tmp_path, capsys):
    listing = tmp_path / "list.csv"
    listing.write_text(f"file,label\n{SAMPLE_IMAGES / 'owl.jpg'},24\n{SAMPLE_IMAGES / 'owl.jpg'},24\nhot_dog.jpg,934\n")
    (tmp_path / "hot_dog.jpg").symlink_to(SAMPLE_IMAGES / "hot_dog.jpg")
    out = tmp_path / "out"
    assert main(["explain", str(listing), str(SAMPLE_IMAGES / "p*.jpg"), "--out", str(out), "--methods", "gradcam"]) == 0
    files = [image["file"].rsplit("/", 1)[-1] for image in json.loads((out / "manifest.json").read_text())["images"]]
    assert files == ["owl.jpg", "hot_dog.jpg", "parrot.jpg", "pets.jpg"]


@pytest.mark.parametrize("arguments,message", [
    (["--batch-size", "0"], "--batch-size must be at least 1, not 0"),
    (["--workers", "-1"], "--workers must be at least 0, not -1"),
    (["--max-side", "-5"], "--max-side must be at least 0, not -5"),
])
def test_bad_counts_exit_2(tmp_path, capsys, arguments, message):
    assert main(["explain", str(SAMPLE_IMAGES / "owl.jpg"), "--out", str(tmp_path), *arguments]) == 2
    assert message in capsys.readouterr().err


def test_a_folder_without_images_exits_2_and_says_what_was_looked_for(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("no photos here")
    assert main(["explain", str(tmp_path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert f"no image files in {tmp_path}" in err and ".jpg" in err


def test_maps_of_a_streamed_batch_equal_those_of_one_photo_at_a_time(tmp_path, lite0):
    """Batching and background reading change nothing in the numbers."""
    photos = [str(SAMPLE_IMAGES / name) for name in SAMPLES]
    outs = [tmp_path / "batched", tmp_path / "one"]
    assert main(["explain", *photos, "--out", str(outs[0]), "--methods", "gradcam", "--batch-size", "4"]) == 0
    assert main(["explain", *photos, "--out", str(outs[1]), "--methods", "gradcam", "--batch-size", "1",
                 "--workers", "0"]) == 0
    for name in SAMPLES:
        stem = name.replace(".", "_")  # the folder keeps the extension
        batched, one = (torch.load(o / stem / "maps.pt", weights_only=True)["maps"]["gradcam"] for o in outs)
        torch.testing.assert_close(batched, one, rtol=1e-4, atol=1e-6)


def test_a_resume_rewrites_a_full_page_the_killed_run_had_no_time_to_write(tmp_path, uninterrupted):
    import shutil

    folder, done = uninterrupted
    out = tmp_path / "out"
    shutil.copytree(done, out)
    (out / "overview-001.png").unlink()  # killed between the 50th photo's line and its page
    assert main(["explain", str(folder), "--out", str(out), *ARGS, "--resume"]) == 0
    assert Image.open(out / "overview-001.png").size == Image.open(done / "overview-001.png").size
    assert not list(out.glob(".*.partial"))
