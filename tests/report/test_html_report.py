"""``report.html`` of ``camlens explain`` (issue 18, requirement 1): one self-contained page per
run, opened from ``file://``; checked as written, and in a real headless Chromium (Debian's
``chromium``) that runs its script: filters by class and method, and pages of at most 50 photos."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from urllib.parse import unquote

import pytest

from camlens.cli import main
from camlens.report import explain_report

from support import BROWSER, SAMPLE_IMAGES



def rendered(page: Path, view: str = "") -> str:
    """The page's DOM after its script ran, in headless Chromium; ``view`` is the address's fragment."""
    if BROWSER is None:
        pytest.skip("no Chromium here (apt-get install chromium): the page's script is not run")
    url = page.resolve().as_uri() + (f"#{view}" if view else "")
    done = subprocess.run([BROWSER, "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom", url],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return _gallery(done.stdout)


def _gallery(dom: str) -> str:
    """What the script drew: the gallery and the pager's position (not the embedded data)."""
    gallery = re.search(r'<main id="gallery">(.*?)</main>', dom, re.S).group(1)
    position = re.search(r'<span id="position">([^<]*)</span>', dom).group(1)
    return f"{position}\n{gallery}"


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("report") / "out"
    assert main(["explain", str(SAMPLE_IMAGES), "--out", str(out), "--methods", "gradcam,layercam", "--target", "top2"]) == 0
    return out


def test_the_page_is_self_contained_and_every_link_resolves(run):
    page = (run / "report.html").read_text(encoding="utf-8")
    assert not re.search(r"(src|href)=[\"']?(https?:)?//", page)  # nothing fetched from anywhere
    data = json.loads(re.search(r'<script type="application/json" id="data">(.*?)</script>', page, re.S).group(1))
    assert len(data["photos"]) == 4 and data["titles"] == {"gradcam": "Grad-CAM", "layercam": "LayerCAM"}
    manifest = json.loads((run / "manifest.json").read_text())
    assert "efficientnet-lite0" in page and manifest["layer"] in page and manifest["versions"]["torch"] in page
    for photo in data["photos"]:
        links = [photo["file"], *photo["links"].values(), *(src for row in photo["overlays"] for src in row.values())]
        assert len(photo["overlays"]) == 2 and all(set(row) == {"gradcam", "layercam"} for row in photo["overlays"])
        for link in links:
            assert (run / unquote(link)).resolve().is_file(), link


def test_filters_by_class_and_method_in_a_real_browser(run):
    everything = rendered(run / "report.html")
    assert everything.count('<section class="photo">') == 4
    assert everything.count("<figcaption>Grad-CAM</figcaption>") == 8  # 4 photos × 2 classes
    hotdog = rendered(run / "report.html", "class=hotdog&methods=layercam")
    assert hotdog.count('<section class="photo">') == 1 and "hot_dog.jpg" in hotdog
    assert hotdog.count("<figcaption>LayerCAM</figcaption>") == 1 and "<figcaption>Grad-CAM</figcaption>" not in hotdog
    nothing = rendered(run / "report.html", "class=no%20such%20class")
    assert '<section class="photo">' not in nothing and "No photo has a class matching" in nothing


def test_a_thousand_photos_are_shown_fifty_a_page_and_load_lazily(tmp_path):
    records = [{"file": str(tmp_path / f"photo_{i:04d}.jpg"), "size": [640, 480],
                "classes": [{"index": i % 1000, "name": f"class {i % 7}", "score": 1.0, "probability": 0.5}],
                "top5": [], "outputs": [f"photo_{i:04d}_jpg/gradcam__1_x.jpg", f"photo_{i:04d}_jpg/grid.jpg",
                                        f"photo_{i:04d}_jpg/maps.pt"]} for i in range(1000)]
    manifest = {"model": "efficientnet-lite0", "layer": "_head_act", "methods": ["gradcam"], "images": records}
    page = explain_report(tmp_path, manifest, {"gradcam": "Grad-CAM"})
    assert page.stat().st_size < 1_000_000
    first = rendered(page)
    assert first.count('<section class="photo">') == 50 and "page 1 of 20 (1000 photos)" in first
    assert first.count('loading="lazy"') == 100  # the photo and its overlay, fifty times: no more is asked for
    last = rendered(page, "page=20")
    assert "photo_0999.jpg" in last and "photo_0949.jpg" not in last
    filtered = rendered(page, "class=class%203")
    assert "(143 photos)" in filtered  # i % 7 == 3 for 143 of 1000


def test_the_evaluate_report_marks_the_best_and_shows_localization_examples(tmp_path):
    from support import photo_dataset

    out = tmp_path / "eval"
    assert main(["evaluate", str(photo_dataset(tmp_path)), "--out", str(out), "--methods", "gradcam,layercam",
                 "--metrics", "faithfulness,localization", "--steps", "4"]) == 0
    page = (out / "report.html").read_text(encoding="utf-8")
    assert not re.search(r"(src|href)=[\"']?(https?:)?//", page)
    summary = json.loads((out / "summary.json").read_text())
    for link in re.findall(r'(?:src|href)="([^"]+)"', page):
        assert (out / unquote(link)).resolve().exists(), link
    examples = sorted(p.name for p in (out / "examples").glob("*.jpg"))
    assert [name.split("-")[:2] for name in examples] == [
        ["gradcam", "best"], ["gradcam", "best"], ["gradcam", "worst"], ["layercam", "best"], ["layercam", "best"],
        ["layercam", "worst"]]  # three photos: the two best, and the one left as the worst
    metrics = list(dict.fromkeys(row["metric"] for row in summary["rows"]))
    marked = set()
    for method, cells in re.findall(r'<tr><td data-value="(\w+)">[^<]*</td>(.*?)</tr>', page, re.S):
        for metric, (_, best) in zip(metrics, re.findall(r'<td data-value="([^"]*)"( class="best")?>', cells)):
            if best:
                marked.add((metric, method))
    expected = set()
    for metric in metrics:
        rows = [r for r in summary["rows"] if r["metric"] == metric]
        top = (max if rows[0]["higher_is_better"] else min)(round(r["mean"], 3) for r in rows)
        expected |= {(metric, r["method"]) for r in rows if round(r["mean"], 3) == top}
    assert marked == expected
    assert "curves.png" in page and "results.jsonl" in page


def test_typing_a_class_and_unticking_a_method_filter_the_page(run, browser):
    page = browser.new_page()
    page.goto((run / "report.html").resolve().as_uri())
    assert page.locator("section.photo").count() == 4
    page.fill("#class", "hotdog")
    assert page.locator("section.photo").count() == 1
    page.uncheck("#methods input[value=gradcam]")
    assert page.locator("figcaption", has_text="Grad-CAM").count() == 0
    assert page.locator("figcaption", has_text="LayerCAM").count() == 1
    assert "class=hotdog" in page.url and "methods=layercam" in page.url  # the view is kept in the address
    overlay = page.locator("figure img").nth(1)
    overlay.scroll_into_view_if_needed()
    assert page.evaluate("img => img.complete && img.naturalWidth > 0", overlay.element_handle())  # it loaded


def test_clicking_a_column_sorts_the_summary_best_first_then_reversed(tmp_path, browser):
    from support import photo_dataset

    out = tmp_path / "eval"
    assert main(["evaluate", str(photo_dataset(tmp_path)), "--out", str(out), "--methods", "gradcam,layercam,hirescam",
                 "--metrics", "faithfulness", "--steps", "4"]) == 0
    means = {(r["method"], r["metric"]): r["mean"] for r in json.loads((out / "summary.json").read_text())["rows"]}
    page = browser.new_page()
    page.goto((out / "report.html").resolve().as_uri())
    order = lambda: page.eval_on_selector_all("#summary tbody tr td:first-child",  # noqa: E731
                                              "cells => cells.map(c => c.dataset.value)")
    for metric, lower_first in (("average_drop", True), ("insertion_auc", False)):
        values = lambda: [means[(m, metric)] for m in order()]  # noqa: E731
        page.click(f"#summary th:has-text('{metric}')")
        best_first = values()
        assert best_first == sorted(best_first, reverse=not lower_first), metric  # ties in any order
        page.click(f"#summary th:has-text('{metric}')")
        assert values() == sorted(best_first, reverse=lower_first), metric


def test_localization_examples_count_a_photo_once_and_never_share_a_file(tmp_path, lite0):
    """A resumed run can hold a photo's box IoU twice; two photos of one name in two folders must
    not overwrite each other's picture."""
    from camlens.data import Sample
    from camlens.evaluate.examples import localization_examples
    from camlens.evaluate.protocol import Protocol
    from camlens.models import wrap

    model, preprocessing = lite0
    loaded = wrap(model, preprocessing, layer="_head_act")
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "1.jpg").symlink_to(SAMPLE_IMAGES / "owl.jpg")
    samples = [Sample(tmp_path / f / "1.jpg", 24, ((24, (100.0, 50.0, 400.0, 500.0)),), id=f"{f}/1.jpg") for f in "ab"]
    records = [{"id": "a/1.jpg", "method": "gradcam", "box_iou": 0.9}, {"id": "a/1.jpg", "method": "gradcam", "box_iou": 0.9},
               {"id": "b/1.jpg", "method": "gradcam", "box_iou": 0.1}]
    found = localization_examples(loaded, samples, records, ["gradcam"], "_head_act", Protocol(), tmp_path, count=2)
    assert [(e["kind"], e["id"]) for e in found["gradcam"]] == [("best", "a/1.jpg"), ("best", "b/1.jpg")]
    files = [e["file"] for e in found["gradcam"]]
    assert len(set(files)) == 2 and all((tmp_path / f).is_file() for f in files)
