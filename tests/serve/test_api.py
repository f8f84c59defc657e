"""The explorer's REST API in process (FastAPI's test client on the real application): it explains
as :func:`camlens.explain` does, its pictures are the overlays of the command line, every refusal
is a 4xx with a JSON message, and the model is left as it was."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

import camlens
from camlens.data import read_image
from camlens.targets import Classes

from support import SAMPLE_IMAGES

pytest.importorskip("camlens.serve", reason="pip install 'camlens[serve]'")
pytest.importorskip("httpx", reason='pip install -e ".[test]" brings httpx')

from fastapi.testclient import TestClient

from camlens.serve import ModelChoice, ServeSettings, create_app
from camlens.serve.explorer import ResultStore, sample_paths


def _client(**limits) -> TestClient:
    settings = ServeSettings(models=(ModelChoice("efficientnet-lite0"), ModelChoice("scenes-classifier")),
                             samples=sample_paths([SAMPLE_IMAGES]), **limits)
    return TestClient(create_app(settings), base_url="http://127.0.0.1:8000")


@pytest.fixture(scope="module")
def client() -> TestClient:
    return _client()


def _picture(response) -> np.ndarray:
    assert response.status_code == 200, response.text
    return np.asarray(Image.open(io.BytesIO(response.content)).convert("RGB")).astype(int)


def _upload(name: str = "owl.jpg") -> dict:
    return {"file": (name, (SAMPLE_IMAGES / name).read_bytes(), "image/jpeg")}


def test_the_api_explains_as_camlens_explain_does(client):
    response = client.post("/api/explain", files=_upload(), data={"methods": "gradcam,layercam",
                                                                  "target": "great grey owl,kite"})
    assert response.status_code == 200, response.text
    result = response.json()
    loaded = camlens.load("efficientnet-lite0")
    images = loaded.preprocessing(read_image(SAMPLE_IMAGES / "owl.jpg"))[None]
    expected = camlens.explain(loaded.model, images, layer="_head_act", methods=("gradcam", "layercam"),
                                target=Classes([24, 21]))
    assert result["layer"] == "_head_act" and [row["index"] for row in result["rows"]] == [24, 21]
    assert [row["name"] for row in result["rows"]] == ["great grey owl", "kite"]
    for r, row in enumerate(result["rows"]):
        assert row["score"] == pytest.approx(float(expected.scores[r]), rel=1e-5)
        for method in ("gradcam", "layercam"):
            torch.testing.assert_close(torch.tensor(row["layer_maps"][method]), expected.layer_maps[method][r],
                                       rtol=1e-5, atol=1e-6)
    probabilities = expected.outputs[0].softmax(0)
    top = probabilities.topk(5)
    assert [p["index"] for p in result["predictions"]] == top.indices.tolist()
    assert [p["probability"] for p in result["predictions"]] == pytest.approx(top.values.tolist(), rel=1e-5)
    assert result["rows"][0]["probability"] == pytest.approx(float(probabilities[24]), rel=1e-5)

    saved = torch.load(io.BytesIO(client.get(result["downloads"]["maps.pt"]).content), weights_only=True)
    assert saved["classes"].tolist() == [24, 21]
    torch.testing.assert_close(saved["maps"]["gradcam"], expected.maps["gradcam"], rtol=1e-5, atol=1e-6)
    download = client.get(result["downloads"]["json"])
    assert "attachment" in download.headers["content-disposition"] and download.json()["id"] == result["id"]


def test_the_page_lays_the_colours_over_the_photo_as_the_overlay_blends_them(client):
    """The page shows the photo with the map's colours (``alpha=1``) over it at the slider's
    opacity a; that is the overlay ``(1 − a)·photo + a·colour`` the PNG download gives."""
    result = client.post("/api/explain", data={"sample": "owl.jpg", "methods": "gradcam"}).json()
    row = result["rows"][0]["pictures"]["gradcam"]
    photo = _picture(client.get(result["photo"]["url"]))
    colours = _picture(client.get(row["png"], params={"alpha": 1}))
    half = _picture(client.get(row["png"], params={"alpha": 0.5}))
    assert np.array_equal(_picture(client.get(row["png"], params={"alpha": 0})), photo)
    assert np.abs(half - (photo + colours) / 2).max() <= 1
    x0, y0, x1, y1 = (round(v) for v in result["photo"]["display_box"])
    assert np.abs(colours - photo)[y0:y1, x0:x1].mean() > 40  # the map is drawn where the model looked
    assert np.array_equal(colours[:, :x0 - 1], photo[:, :x0 - 1])  # and only there: the crop's sides are the photo
    assert client.get(row["heat"]).headers["content-type"] == "image/jpeg"


def test_layers_classes_samples_and_methods_are_listed(client):
    layers = client.get("/api/models/efficientnet-lite0/layers").json()
    found, _ = camlens.load("efficientnet-lite0").layers()
    assert layers["recommended"] == "_head_act"
    assert [layer["name"] for layer in layers["layers"]] == [layer.name for layer in found if layer.explainable]
    head = next(layer for layer in layers["layers"] if layer["name"] == "_head_act")
    assert head["shape"] == [1, 1280, 7, 7]
    classes = client.get("/api/models/efficientnet-lite0/classes", params={"q": "grey owl"}).json()
    assert classes[0] == {"index": 24, "name": "great grey owl"}
    assert client.get("/api/models/efficientnet-lite0/classes", params={"q": "24"}).json()[0]["index"] == 24
    assert len(client.get("/api/models/efficientnet-lite0/classes", params={"limit": 1000}).json()) == 1000
    samples = [s["name"] for s in client.get("/api/samples").json()]
    assert samples == ["hot_dog.jpg", "owl.jpg", "parrot.jpg", "pets.jpg"]
    assert "layercam" in {m["name"] for m in client.get("/api/methods").json()}
    scenes = client.post("/api/explain", data={"sample": "pets.jpg", "model": "scenes-classifier", "target": "top2"})
    assert scenes.status_code == 200 and len(scenes.json()["rows"]) == 2


def test_the_api_is_described_by_openapi_and_on_a_page_that_fetches_nothing(client):
    described = client.get("/openapi.json").json()
    assert {"/api/models", "/api/models/{name}/layers", "/api/explain"} <= set(described["paths"])
    fields = described["components"]["schemas"][
        described["paths"]["/api/explain"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]["$ref"]
        .split("/")[-1]]["properties"]
    assert {"file", "sample", "model", "layer", "methods", "target"} <= set(fields)
    for page in ("/docs", "/"):
        text = client.get(page).text
        assert "http://" not in text and "https://" not in text and "//cdn" not in text
    assert "/api/explain" in client.get("/docs").text


def _png_header(width: int, height: int) -> bytes:
    """A PNG whose header says ``width``×``height`` (its pixels never get decoded)."""
    import struct
    import zlib

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    chunk = lambda kind, data: (struct.pack(">I", len(data)) + kind + data
                                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 8))
            + chunk(b"IEND", b""))


@pytest.mark.parametrize("request_, status, says", [
    ({"data": {"sample": "owl.jpg", "model": "resnet"}}, 422, "unknown model 'resnet'"),
    ({"data": {"sample": "owl.jpg", "layer": "_blocks.99"}}, 422, "not one of efficientnet-lite0's candidate layers"),
    ({"data": {"sample": "owl.jpg", "layer": "_fc"}}, 422, "candidate layers"),  # a layer, but not a spatial one
    ({"data": {"sample": "owl.jpg", "methods": "gradcam,magic"}}, 422, "unknown method 'magic'"),
    ({"data": {"sample": "owl.jpg", "target": "unicorn"}}, 422, "unknown class name 'unicorn'"),
    ({"data": {"sample": "owl.jpg", "target": "top0"}}, 422, "k must be a positive integer"),
    ({"data": {"sample": "../../../etc/passwd"}}, 422, "unknown sample"),
    ({"data": {"sample": str(SAMPLE_IMAGES / "owl.jpg")}}, 422, "unknown sample"),
    ({"data": {}}, 422, "send a photo"),
    ({"files": _upload(), "data": {"sample": "owl.jpg"}}, 422, "one of the two"),
    ({"files": {"file": ("notes.jpg", b"these are not pixels\n", "image/jpeg")}}, 415, "not an image file"),
    ({"files": {"file": ("empty.jpg", b"", "image/jpeg")}}, 415, "is empty"),
    ({"files": {"file": ("half.jpg", (SAMPLE_IMAGES / "owl.jpg").read_bytes()[:20000], "image/jpeg")}}, 422,
     "truncated"),
    ({"files": {"file": ("huge.png", _png_header(30000, 30000), "image/png")}}, 413, "decompression bomb"),
    ({"files": {"file": ("big.png", _png_header(8000, 8000), "image/png")}}, 413, "exceeds the limit of 50000000"),
    ({"files": {"file": ("owl.eps", b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n", "image/jpeg")}}, 415,
     "not an image file"),  # a format Pillow reads with Ghostscript: never tried on uploads
    ({"data": {"sample": "owl.jpg", "methods": "rollout"}}, 422, "rollout"),  # a method this CNN cannot do
])
def test_each_bad_request_is_a_4xx_with_a_message_and_the_server_goes_on(client, request_, status, says):
    response = client.post("/api/explain", **request_)
    assert response.status_code == status, response.text
    assert says in response.json()["detail"]
    assert client.get("/api/models").status_code == 200


def test_bad_addresses_are_404_or_422(client):
    result = client.post("/api/explain", data={"sample": "owl.jpg"}).json()
    picture = result["rows"][0]["pictures"]["gradcam"]["png"]
    assert client.get("/api/models/resnet/layers").status_code == 404
    assert client.get("/api/models/resnet/classes").status_code == 404
    assert client.get("/api/results/not-a-result/maps.pt").json()["detail"].startswith("this result is no longer kept")
    assert client.get(picture.replace("/rows/0/", "/rows/7/")).status_code == 404
    assert client.get(picture.replace("gradcam.png", "layercam.png")).status_code == 404  # not explained by it
    assert client.get(picture.replace(".png", ".gif")).status_code == 404
    assert client.get(picture, params={"alpha": 2}).status_code == 422
    assert client.get("/api/samples/pyproject.toml").json()["detail"].startswith("unknown sample")
    assert client.get("/api/samples/pyproject.toml").status_code == 404


def test_an_upload_over_the_limit_is_refused_before_it_is_read_whole():
    small = _client(max_upload_bytes=100_000)
    response = small.post("/api/explain", files=_upload("parrot.jpg"))  # 597 kB
    assert response.status_code == 413 and "limit of 0.0953674 MB" in response.json()["detail"]
    assert small.post("/api/explain", files=_upload("owl.jpg")).status_code == 413  # 156 kB
    assert small.post("/api/explain", data={"sample": "parrot.jpg"}).status_code == 200  # samples are the server's


def test_a_model_with_a_full_queue_answers_503_and_the_next_request_goes_through():
    import threading

    client = _client(queue=1)
    slot = client.app.state.explorer.slots["efficientnet-lite0"]
    release = threading.Event()
    holding = slot.submit(release.wait)  # one job holds the model: the queue of one is full
    busy = client.post("/api/explain", data={"sample": "owl.jpg"})
    release.set()
    holding.result(timeout=10)
    assert busy.status_code == 503 and busy.headers["retry-after"] == "1" and "try again" in busy.json()["detail"]
    assert client.post("/api/explain", data={"sample": "owl.jpg"}).status_code == 200


def test_the_model_is_left_as_it_was_after_good_and_failed_requests(client):
    slot = client.app.state.explorer.slots["efficientnet-lite0"]
    model = slot.loaded().model
    before = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    flags = [p.requires_grad for p in model.parameters()]
    client.post("/api/explain", data={"sample": "owl.jpg", "methods": "gradcam,guided_backprop,scorecam_fast"})
    client.post("/api/explain", data={"sample": "owl.jpg", "methods": "rollout"})  # fails inside explain
    assert not model.training and [p.requires_grad for p in model.parameters()] == flags
    assert all(not m._forward_hooks and not m._forward_pre_hooks and not m._backward_hooks for m in model.modules())
    assert all(torch.equal(before[name], tensor) for name, tensor in model.state_dict().items())


def test_results_are_kept_within_their_budget_oldest_first(client):
    first = client.post("/api/explain", data={"sample": "owl.jpg"}).json()
    store = client.app.state.explorer.results
    kept = store.get(first["id"])
    small = ResultStore(budget=int(kept.nbytes * 2.5))
    for key in "abc":
        small.add(type(kept)(**{**vars(kept), "id": key}))
    assert [key for key in "abc" if _kept(small, key)] == ["b", "c"]
    tiny = ResultStore(budget=0)
    tiny.add(kept)
    assert _kept(tiny, kept.id)  # the newest always stays: the page asks for its pictures next


def _kept(store: ResultStore, key: str) -> bool:
    from camlens.serve import RequestError

    try:
        store.get(key)
        return True
    except RequestError:
        return False


def test_an_error_inside_a_request_is_a_json_500_and_the_next_request_is_served(monkeypatch):
    from camlens.serve import explorer as module

    client = TestClient(_client().app, raise_server_exceptions=False, base_url="http://127.0.0.1:8000")

    def broken(*args, **kwargs):
        raise RuntimeError("the device fell over")

    with monkeypatch.context() as patch:
        patch.setattr(module, "explain", broken)
        failed = client.post("/api/explain", data={"sample": "owl.jpg"})
    assert failed.status_code == 500 and "RuntimeError" in failed.json()["detail"]
    assert "fell over" not in failed.json()["detail"]  # the server's insides stay in its log
    assert client.post("/api/explain", data={"sample": "owl.jpg"}).status_code == 200


def test_a_request_explains_at_most_max_rows_classes_and_each_class_once(client):
    many = client.post("/api/explain", data={"sample": "owl.jpg", "target": "top21"})
    assert many.status_code == 422 and "more than the 20 this server explains" in many.json()["detail"]
    distinct = ",".join(str(i) for i in range(21))
    assert client.post("/api/explain", data={"sample": "owl.jpg", "target": distinct}).status_code == 422
    repeated = client.post("/api/explain", data={"sample": "owl.jpg", "target": ",".join(["24"] * 3000),
                                                 "methods": "gradcam,gradcam"})
    assert repeated.status_code == 200 and [row["index"] for row in repeated.json()["rows"]] == [24]
    assert [m["name"] for m in repeated.json()["methods"]] == ["gradcam"]


def test_a_cancelled_request_gives_its_place_in_the_queue_back():
    import threading

    slot = _client(queue=2).app.state.explorer.slots["efficientnet-lite0"]
    release = threading.Event()
    holding = slot.submit(release.wait)
    waiting = slot.submit(lambda: "never run")
    assert waiting.cancel()  # the client went away while it waited
    release.set()
    holding.result(timeout=10)
    release.clear()
    holding = slot.submit(release.wait)
    second = slot.submit(lambda: "ran")  # the queue holds two again
    release.set()
    assert second.result(timeout=10) == "ran"


def test_a_post_from_another_sites_page_and_a_foreign_host_name_are_refused(client):
    foreign = client.post("/api/explain", data={"sample": "owl.jpg"}, headers={"Origin": "https://evil.example"})
    assert foreign.status_code == 403 and "another site" in foreign.json()["detail"]
    own = client.post("/api/explain", data={"sample": "owl.jpg"}, headers={"Origin": "http://127.0.0.1:8000"})
    assert own.status_code == 200
    rebound = client.get("/api/models", headers={"Host": "attacker.example"})  # DNS rebinding
    assert rebound.status_code == 400


def test_hub_names_with_a_slash_list_their_layers_and_classes(tmp_path):
    transformers = pytest.importorskip("transformers")
    config = transformers.ViTConfig(image_size=64, patch_size=16, hidden_size=32, num_hidden_layers=2,
                                    num_attention_heads=2, intermediate_size=64, num_labels=3,
                                    id2label={0: "cat", 1: "dog", 2: "owl"}, label2id={"cat": 0, "dog": 1, "owl": 2})
    transformers.ViTForImageClassification(config).save_pretrained(tmp_path / "vit")
    name = f"hf:{tmp_path / 'vit'}"
    client = TestClient(create_app(ServeSettings(models=(ModelChoice(name),), samples=sample_paths([SAMPLE_IMAGES]))),
                        base_url="http://127.0.0.1:8000")
    layers = client.get(f"/api/models/{name}/layers").json()
    assert layers["recommended"] == "vit.layers.1.layernorm_before"
    assert client.get(f"/api/models/{name}/classes", params={"q": "ow"}).json() == [{"index": 2, "name": "owl"}]
    explained = client.post("/api/explain", data={"sample": "owl.jpg", "model": name, "target": "owl"})
    assert explained.status_code == 200 and explained.json()["rows"][0]["name"] == "owl"


def test_settings_refuse_limits_that_cannot_hold():
    with pytest.raises(ValueError, match="max_pixels must be at most 89478485"):
        ServeSettings(models=(ModelChoice("efficientnet-lite0"),), max_pixels=100_000_000)
    with pytest.raises(ValueError, match="at least one model"):
        ServeSettings(models=())
