"""The model zoo: real offline pretrained models, preprocessing, class names, clear errors."""

from __future__ import annotations

import csv
import urllib.error

import numpy as np
import pytest
import torch
from PIL import Image

import camlens
from camlens.data import Preprocessing, imagenet_classes, stream_photos
from camlens.models import ZOO, load, wrap

from support import MOBILENET_WEIGHTS, SAMPLE_IMAGES


def test_efficientnet_lite0_classifies_chelsea_and_coffee():
    skimage_data = pytest.importorskip("skimage.data")
    loaded = load("efficientnet-lite0")
    images = torch.stack([loaded.preprocessing(Image.fromarray(skimage_data.chelsea())),
                          loaded.preprocessing(Image.fromarray(skimage_data.coffee()))])
    with torch.inference_mode():
        predicted = loaded.model(images).argmax(dim=1).tolist()
    assert predicted == [285, 967]
    assert [loaded.class_names[i] for i in predicted] == ["Egyptian cat", "espresso"]
    assert loaded.layer == "_head_act" and not loaded.model.training


def test_mobilenet_v2_reaches_89_percent_top1_on_imagenet_sample_1000(shared_data):
    """TensorFlow "SAME" padding is what makes these weights work: symmetric padding gives 80.5%."""
    loaded = load("mobilenet-v2", weights=shared_data(MOBILENET_WEIGHTS))
    folder = shared_data("imagenet_sample_1000")
    rows = list(csv.DictReader(open(folder / "labels.csv")))
    assert len(rows) == 1000
    labels = {str(folder / row["filename"]): int(row["index"]) for row in rows}
    correct = 0
    # photos decoded by background threads, small channels-last batches: the model as loaded, faster
    for batch in stream_photos([folder / row["filename"] for row in rows], loaded.preprocessing, batch_size=10):
        with torch.inference_mode():
            predicted = loaded.model(batch.tensor.contiguous(memory_format=torch.channels_last)).argmax(dim=1)
        expected = torch.tensor([labels[str(photo.path)] for photo in batch.photos])
        correct += int((predicted == expected).sum())
    assert correct / len(rows) >= 0.89, f"top-1 {correct / len(rows):.3f}"


def test_zoo_errors_say_what_to_do():
    with pytest.raises(ValueError, match=r"unknown model 'efficientnet-lite9'. Did you mean .*'efficientnet-lite0'.*Available: "):
        load("efficientnet-lite9")
    with pytest.raises(ValueError, match="mobilenet-v2 needs weights=PATH"):
        load("mobilenet-v2")
    with pytest.raises(FileNotFoundError, match="MobileNetV2 weights not found at /nonexistent.pth"):
        load("mobilenet-v2", weights="/nonexistent.pth")
    assert set(ZOO) >= {"efficientnet-lite0", "efficientnet-lite1", "efficientnet-lite2", "mobilenet-v2"}


def test_torchvision_and_timm_models_load_and_report_offline_downloads(monkeypatch):
    pytest.importorskip("torchvision")
    timm = pytest.importorskip("timm")
    resnet = load("torchvision:resnet18", pretrained=False)
    assert resnet.preprocessing == Preprocessing(256, 224, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    # random or a user's weights keep the architecture's own input size (read from metadata, no download)
    assert load("torchvision:efficientnet_b4", pretrained=False).preprocessing.crop == 380
    with pytest.raises(ValueError, match="torchvision has no model 'resnet51'; did you mean"):
        load("torchvision:resnet51", pretrained=False)
    with pytest.raises(ValueError, match="timm has no model 'resnet5o'"):
        load("timm:resnet5o", pretrained=False)
    assert load("timm:resnet18", pretrained=False).preprocessing.crop == 224

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network on this machine")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    with pytest.raises(RuntimeError, match=r"could not download the pretrained weights of torchvision:resnet18 .*no network"):
        load("torchvision:resnet18")
    assert timm is not None


def test_any_module_with_its_preprocessing_can_be_wrapped():
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(4, 2))
    loaded = wrap(model.train(), Preprocessing(32, 32, (0.5,) * 3, (0.5,) * 3), class_names=("no", "yes"))
    assert not loaded.model.training and loaded.class_names == ("no", "yes") and loaded.layer == "auto"


def test_imagenet_class_names():
    names = imagenet_classes()
    assert len(names) == 1000 and names[0] == "tench" and names[242] == "boxer" and names[282] == "tiger cat"


def test_crop_box_is_the_region_the_model_sees():
    """Cropping the original at crop_box and resizing to the crop size must reproduce the
    preprocessed image (up to resampling)."""
    rng = np.random.default_rng(0)
    smooth = rng.random((12, 16, 3)) * 255
    original = Image.fromarray(smooth.astype(np.uint8)).resize((640, 480), Image.BICUBIC)
    preprocessing = Preprocessing(256, 224, (0.0,) * 3, (1.0,) * 3)
    box = preprocessing.crop_box(original.size)
    assert box == pytest.approx((108.86, 30.0, 529.27, 450.0), abs=0.01)
    direct = preprocessing(original)
    via_box = torch.from_numpy(np.asarray(original.resize((224, 224), Image.BILINEAR, box=box), dtype=np.float32) / 255).permute(2, 0, 1)
    assert (direct - via_box).abs().mean() < 0.01


def test_load_in_float64_for_reference_computations(lite0):
    from camlens import read_image

    loaded = load("efficientnet-lite0", dtype=torch.float64)
    assert {p.dtype for p in loaded.model.parameters()} == {torch.float64}
    image = loaded.preprocessing(camlens.read_image(SAMPLE_IMAGES / "owl.jpg"))
    assert image.dtype == torch.float64
    explanation = camlens.explain(loaded.model, image[None], layer=loaded.layer, methods="gradcam")
    assert explanation.maps["gradcam"].dtype == torch.float64
    with pytest.raises(ValueError, match="floating-point"):
        load("efficientnet-lite0", dtype=torch.int64)


def test_timm_weights_that_cannot_be_fetched_are_refused_at_once():
    """Offline, timm retries a download for about a minute; camlens checks the cache and the
    network first and says what to do."""
    pytest.importorskip("timm")
    from camlens.models.zoo import _hub_unreachable

    if _hub_unreachable() is None:
        pytest.skip("the Hugging Face Hub may be reachable here: the weights would download")
    with pytest.raises(RuntimeError, match="not in the local Hugging Face cache and .*: use pretrained=False"):
        load("timm:resnet18")
    assert load("timm:resnet18", pretrained=False).model.training is False  # random weights need no network


def test_the_hub_probe_follows_offline_mode_the_endpoint_and_proxies(monkeypatch):
    """HF_HUB_OFFLINE refuses at once; HF_ENDPOINT's host and port are the ones probed; through a
    proxy a direct connection tells nothing, so timm is left to try."""
    import socket

    constants = pytest.importorskip("huggingface_hub.constants")
    from camlens.models.zoo import _hub_unreachable

    for name in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    assert _hub_unreachable() == "HF_HUB_OFFLINE is set"
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    with socket.socket() as listening:  # a local mirror that accepts connections
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        port = listening.getsockname()[1]
        monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{port}")
        assert _hub_unreachable() is None
    monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{port}")  # closed now: refused at once
    assert _hub_unreachable() == "127.0.0.1 cannot be reached"
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    assert _hub_unreachable() is None


def test_weights_replace_a_torchvision_models_pretrained_ones(tmp_path, capsys):
    """``--weights`` was silently ignored for torchvision:/timm: models; now it loads a state dict
    (or a checkpoint holding one, DataParallel's ``module.`` prefix dropped) or says why not."""
    pytest.importorskip("torchvision")
    from camlens.cli import main

    torch.manual_seed(3)
    reference = load("torchvision:resnet18", pretrained=False).model
    state = {f"module.{key}": value for key, value in reference.state_dict().items()}
    torch.save({"epoch": 7, "state_dict": state}, tmp_path / "checkpoint.pth")
    loaded = load("torchvision:resnet18", weights=tmp_path / "checkpoint.pth").model
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), reference.state_dict().values()))
    with pytest.raises(FileNotFoundError, match="weights file .*nowhere.pth not found"):
        load("torchvision:resnet18", weights=tmp_path / "nowhere.pth")
    torch.save(load("torchvision:resnet34", pretrained=False).model.state_dict(), tmp_path / "other.pth")
    with pytest.raises(ValueError, match=r"do not fit torchvision:resnet18: keys .* unexpected \(layer1\.2\.bn1"):
        load("torchvision:resnet18", weights=tmp_path / "other.pth")
    (tmp_path / "text.pth").write_text("not weights")
    with pytest.raises(ValueError, match="not a weights file torch.load can read safely"):
        load("torchvision:resnet18", weights=tmp_path / "text.pth")
    assert main(["explain", str(SAMPLE_IMAGES / "owl.jpg"), "--model", "torchvision:resnet18", "--weights",
                 str(tmp_path / "other.pth"), "--out", str(tmp_path / "out")]) == 2
    assert "do not fit torchvision:resnet18" in capsys.readouterr().err


def test_layers_of_a_torchvision_model_need_no_download(capsys):
    pytest.importorskip("torchvision")
    from camlens.cli import main

    assert main(["layers", "torchvision:resnet18"]) == 0
    assert "layer4" in capsys.readouterr().out


def test_a_hugging_face_classifier_saved_to_a_folder_loads_and_explains(tmp_path):
    """``hf:FOLDER``: the model, its processor's mean, std and size, its class names, and a
    token layout found in its config; a hub name that is neither cached nor reachable is refused
    at once."""
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = transformers.ViTConfig(image_size=64, patch_size=16, hidden_size=32, num_hidden_layers=2,
                                    num_attention_heads=2, intermediate_size=64, num_labels=3,
                                    id2label={0: "cat", 1: "dog", 2: "owl"}, label2id={"cat": 0, "dog": 1, "owl": 2})
    transformers.ViTForImageClassification(config).save_pretrained(tmp_path / "vit")
    transformers.ViTImageProcessor(size={"height": 64, "width": 64}, image_mean=[0.4, 0.4, 0.4],
                                   image_std=[0.2, 0.2, 0.2]).save_pretrained(tmp_path / "vit")
    loaded = load(f"hf:{tmp_path / 'vit'}")
    assert loaded.class_names == ("cat", "dog", "owl")
    assert loaded.preprocessing == Preprocessing(64, 64, (0.4, 0.4, 0.4), (0.2, 0.2, 0.2))
    image = loaded.preprocessing(camlens.read_image(SAMPLE_IMAGES / "owl.jpg"))
    explanation = camlens.explain(loaded.model, image[None], layer=loaded.layer, methods="gradcam")
    assert explanation.layer == "vit.layers.1.layernorm_before" and explanation.layer_maps["gradcam"].shape == (1, 4, 4)
    from camlens.models.zoo import _hub_unreachable

    if _hub_unreachable() is not None:
        with pytest.raises(RuntimeError, match="not a saved model folder nor in the local Hugging Face cache"):
            load("hf:someone/no-such-vit")
