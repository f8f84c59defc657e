"""``camlens serve``'s options: what it offers by default, and every option it refuses (exit 2)
before a server starts; a non-loopback address is served with a warning."""

from __future__ import annotations

import pytest

from camlens.cli import main

from support import SAMPLE_IMAGES

pytest.importorskip("camlens.serve", reason="pip install 'camlens[serve]'")


@pytest.fixture
def served(monkeypatch) -> dict:
    """What ``uvicorn.run`` was called with; no server starts."""
    import uvicorn

    calls: dict = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: calls.update(app=app, **options))
    return calls


def test_by_default_it_serves_the_zoo_classifiers_on_loopback(served, capsys, monkeypatch):
    monkeypatch.chdir(SAMPLE_IMAGES.parent.parent)  # the checkout: examples/images are the samples
    assert main(["serve"]) == 0
    assert served["host"] == "127.0.0.1" and served["port"] == 8000
    explorer = served["app"].state.explorer
    assert {"efficientnet-lite0", "scenes-classifier", "scenes-vit"} <= set(explorer.slots)
    assert not {"scenes-captioner", "scenes-vqa", "scenes-detector", "mobilenet-v2"} & set(explorer.slots)
    assert set(explorer.samples) == {"hot_dog.jpg", "owl.jpg", "parrot.jpg", "pets.jpg"}
    assert explorer.settings.max_upload_bytes == 20 * 2 ** 20 and explorer.settings.max_pixels == 50_000_000
    assert "warning" not in capsys.readouterr().err


def test_a_network_address_is_served_with_a_warning(served, capsys):
    assert main(["serve", "--host", "0.0.0.0", "--only", "--model", "scenes-classifier", "--port", "8123"]) == 0
    assert served["host"] == "0.0.0.0" and served["port"] == 8123
    assert "warning: serving on 0.0.0.0" in capsys.readouterr().err
    assert list(served["app"].state.explorer.slots) == ["scenes-classifier"]


def test_torchvision_names_are_offered_when_torchvision_knows_them(served):
    pytest.importorskip("torchvision")
    assert main(["serve", "--model", "torchvision:resnet18", "--samples", str(SAMPLE_IMAGES)]) == 0
    assert next(iter(served["app"].state.explorer.slots)) == "torchvision:resnet18"  # the page's default


@pytest.mark.parametrize("options, says", [
    (["--model", "resnet"], "unknown model 'resnet'"),
    (["--model", "torchvision:resnet1000"], "torchvision has no model 'resnet1000'"),
    (["--model", "scenes-captioner"], "scenes-captioner is a captioning model"),
    (["--model", "mobilenet-v2"], "mobilenet-v2 needs its weights file"),
    (["--model", "mobilenet-v2=/no/such/file.pth"], "weights file /no/such/file.pth not found"),
    (["--only"], "no model to offer"),
    (["--samples", "/no/such/folder"], "--samples /no/such/folder is not a folder"),
    (["--queue", "0"], "queue must be at least 1"),
    (["--max-upload-mb", "0"], "max_upload_bytes must be at least 1"),
    (["--device", "cuda:7"], "cuda"),
    (["--max-megapixels", "100"], "max_pixels must be at most 89478485"),
])
def test_bad_options_are_usage_errors_before_anything_starts(served, capsys, options, says):
    assert main(["serve", *options]) == 2
    assert says in capsys.readouterr().err and not served


def test_weights_given_for_a_zoo_model_are_kept(served, tmp_path):
    weights = tmp_path / "mine.pt"
    weights.write_bytes(b"")
    assert main(["serve", "--model", f"scenes-classifier={weights}"]) == 0
    slots = served["app"].state.explorer.slots
    assert slots["scenes-classifier"].choice.weights == weights and "efficientnet-lite0" in slots


def test_on_loopback_only_this_machines_names_are_answered_and_on_the_network_any(served):
    assert main(["serve"]) == 0
    assert served["app"].state.explorer.settings.allowed_hosts == ("127.0.0.1", "localhost", "::1")
    assert main(["serve", "--host", "0.0.0.0"]) == 0
    assert served["app"].state.explorer.settings.allowed_hosts == ("*",)
