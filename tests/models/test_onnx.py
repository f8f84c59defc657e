"""Models from ONNX files: a converted classifier explains exactly like the original, what cannot be
trusted is refused, and PP-OCRv4 (RapidOCR's files) converts, finds words, reads them and has
per-character maps in reading order."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import sys
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from camlens.models import ppocr
from camlens.models.from_onnx import INSTALL  # the module imports onnx only when a file is loaded

pytest.importorskip("onnx", reason=INSTALL)
pytest.importorskip("onnx2torch", reason=INSTALL)
pytest.importorskip("onnxruntime", reason=INSTALL)

import onnx  # noqa: E402
import onnxruntime  # noqa: E402

from camlens import explain  # noqa: E402
from camlens.data import imagenet_classes  # noqa: E402
from camlens.metrics.localization import reading_order  # noqa: E402
from camlens.models.from_onnx import ConversionError, OnnxMismatch, load_onnx, onnx_model  # noqa: E402
from camlens.targets import CTCTarget  # noqa: E402

# onnx2torch's Slice indexes with a list, which torch deprecates
pytestmark = pytest.mark.filterwarnings("ignore:Using a non-tuple sequence:UserWarning")


def _export(module: nn.Module, inputs: tuple[torch.Tensor, ...], path, names: list[str]) -> None:
    """The legacy (TorchScript) exporter: the dynamo one needs onnxscript."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, inputs, str(path), dynamo=False, input_names=names, output_names=["output"],
                          dynamic_axes={name: {0: "batch"} for name in names})


@pytest.fixture(scope="module")
def resnet(tmp_path_factory):
    """ResNet-18 with random weights, and its ONNX export at 64 × 64 (batch free)."""
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None).eval()
    path = tmp_path_factory.mktemp("onnx") / "resnet18.onnx"
    _export(model, (torch.zeros(1, 3, 64, 64),), path, ["images"])
    return model, path


def test_converted_resnet_explains_like_the_original_and_leaves_the_file_as_it_was(resnet):
    model, path = resnet
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    converted = load_onnx(path)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before
    images = torch.randn(3, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    methods = ("gradcam", "layercam")
    original = explain(model, images, "layer4", methods, target=[1, 500, 999])
    ours = explain(converted, images, "auto", methods, target=[1, 500, 999])
    assert ours.activations.shape == original.activations.shape == (3, 512, 2, 2)
    for method in methods:
        assert original.maps[method].abs().max() > 0
        torch.testing.assert_close(ours.maps[method], original.maps[method], atol=1e-4, rtol=0)
    torch.testing.assert_close(ours.scores, original.scores, atol=1e-4, rtol=0)


def test_onnx_model_gives_imagenet_names_and_preprocessing_at_the_files_size(resnet):
    _, path = resnet
    loaded = onnx_model(str(path))
    assert loaded.name == f"onnx:{path}" and loaded.class_names == imagenet_classes()
    assert (loaded.preprocessing.crop, loaded.preprocessing.resize) == (64, 73)
    assert loaded.preprocessing.mean == (0.485, 0.456, 0.406)
    with pytest.raises(ValueError, match="weights from the ONNX file"):
        onnx_model(str(path), weights="other.pth")


def test_small_classifier_gets_numbered_class_names(tmp_path):
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3)).eval()
    path = tmp_path / "small.onnx"
    _export(model, (torch.zeros(1, 3, 32, 32),), path, ["images"])
    assert onnx_model(str(path)).class_names == ("class 0", "class 1", "class 2")


class Flattening(nn.Module):
    """A classifier whose head reshapes by the batch size: exported without dynamic axes, its
    graph holds a batch of 1."""

    def __init__(self):
        super().__init__()
        self.features, self.head = nn.Conv2d(3, 8, 3), nn.Linear(8 * 30 * 30, 5)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        found = self.features(images)
        return self.head(found.reshape(found.shape[0], -1))


def test_a_file_exported_at_a_batch_of_one_explains_batches(tmp_path):
    torch.manual_seed(0)
    model = Flattening().eval()
    path = tmp_path / "batch1.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # opset 17: onnx2torch has no converter for opset 19's Reshape
        torch.onnx.export(model, (torch.zeros(1, 3, 32, 32),), str(path), dynamo=False, input_names=["images"],
                          opset_version=17)
    loaded = onnx_model(str(path))
    images = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(images), model(images), atol=1e-5, rtol=0)
    ours = explain(loaded.model, images, "auto", "gradcam", target=[0, 1, 2])
    original = explain(model, images, "features", "gradcam", target=[0, 1, 2])
    torch.testing.assert_close(ours.maps["gradcam"], original.maps["gradcam"], atol=1e-5, rtol=0)


def test_missing_file_and_non_onnx_file_are_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        load_onnx(tmp_path / "absent.onnx")
    text = tmp_path / "notes.onnx"
    text.write_text("these are not the weights you are looking for\n" * 20)
    with pytest.raises(ValueError, match="is not an ONNX model"):
        load_onnx(text)


def test_several_inputs_are_refused(tmp_path):
    class TwoImages(nn.Module):
        def forward(self, a, b):
            return (a + b).mean(dim=(2, 3))

    path = tmp_path / "two.onnx"
    _export(TwoImages(), (torch.zeros(1, 3, 8, 8), torch.zeros(1, 3, 8, 8)), path, ["left", "right"])
    with pytest.raises(ValueError, match=r"has 2 inputs \(left .*right .*one image input"):
        load_onnx(path)


def test_op_without_converter_is_named(tmp_path):
    from onnx import TensorProto, helper

    node = helper.make_node("Frobnicate", ["images"], ["output"], domain="example.unknown")
    values = [helper.make_tensor_value_info(name, TensorProto.FLOAT, [1, 3, 8, 8]) for name in ("images", "output")]
    graph = helper.make_graph([node], "unknown", values[:1], values[1:])
    path = tmp_path / "unknown.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                      helper.make_opsetid("example.unknown", 1)]), str(path))
    with pytest.raises(ConversionError, match="op Frobnicate"):
        load_onnx(path)


def test_conversion_that_disagrees_with_onnxruntime_is_refused_with_the_difference(resnet, monkeypatch):
    import onnx2torch

    convert = onnx2torch.convert

    class Shifted(nn.Module):  # a converter that gets one op slightly wrong
        def __init__(self, module):
            super().__init__()
            self.module = module

        def forward(self, images):
            return self.module(images) + 0.01

    monkeypatch.setattr(onnx2torch, "convert", lambda proto: Shifted(convert(proto)))
    with pytest.raises(OnnxMismatch, match=r"max abs difference 0\.01 > tolerance 0\.0001") as refused:
        load_onnx(resnet[1])
    assert refused.value.max_abs_difference == pytest.approx(0.01, abs=1e-5)


def test_missing_package_names_the_pip_line(resnet, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx2torch", None)
    with pytest.raises(ImportError, match="pip install onnx onnx2torch onnxsim onnxruntime"):
        load_onnx(resnet[1])


# PP-OCRv4, from RapidOCR's package

needs_rapidocr = pytest.mark.skipif(importlib.util.find_spec("rapidocr_onnxruntime") is None,
                                    reason=ppocr.INSTALL)


def _onnxruntime(path, inputs: torch.Tensor) -> np.ndarray:
    """What onnxruntime gives on the file, fed BGR as PaddleOCR's models expect."""
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": inputs.flip(1).numpy()})[0]


@pytest.fixture(scope="module")
def detected(street_sign):
    """The detector, its input and output on the street sign, and the words' boxes in the photo."""
    from camlens.models import ppocr

    detector = ppocr.ppocr_detector()
    inputs = ppocr.detector_input(street_sign)
    with torch.no_grad():
        output = detector.model(inputs)
    sx, sy = street_sign.width / inputs.shape[-1], street_sign.height / inputs.shape[-2]
    boxes = [(x0 * sx, y0 * sy, x1 * sx, y1 * sy) for x0, y0, x1, y1 in ppocr.word_boxes(output)[0]]
    return inputs, output, boxes


@pytest.fixture(scope="module")
def reader():
    from camlens.models import ppocr

    return ppocr.ppocr_reader()


@needs_rapidocr
def test_dbnet_matches_onnxruntime_and_finds_the_street_signs_words(detected):
    from camlens.models import ppocr

    inputs, output, boxes = detected
    expected = _onnxruntime(ppocr.model_file(ppocr.DETECTOR_FILE), inputs)
    assert output.shape == (1, 1, 736, 1056)
    assert np.abs(output.numpy() - expected).max() <= 1e-4
    assert len(boxes) >= 8  # nine lines of words and a letter; the sign's lines are words DBNet joins


@needs_rapidocr
def test_svtr_matches_onnxruntime_and_reads_the_street_sign(street_sign, detected, reader):
    from camlens.models import ppocr

    crops = torch.cat([ppocr.word_crop(street_sign, box)[0] for box in detected[2]])
    with torch.no_grad():
        output = reader.model(crops)
    assert output.shape == (len(crops), 40, 6625) and reader.class_names[0] == "blank"
    expected = _onnxruntime(ppocr.model_file(ppocr.READER_FILE), crops)
    assert np.abs(output.exp().numpy() - expected).max() <= 1e-4
    words = reader.reading(output)
    assert {"Police Station", "Hospital-Airport", "Polpis-Wauwinet"} <= set(words)


def test_reader_without_a_fixed_shape_names_the_op_and_the_fix():
    from camlens.models import ppocr

    if importlib.util.find_spec("rapidocr_onnxruntime") is None:
        pytest.skip("pip install --no-deps rapidocr-onnxruntime==1.4.4")
    with pytest.raises(ConversionError, match=r"op BatchNormalization.*input_shape=\(C, H, W\)"):
        load_onnx(ppocr.model_file(ppocr.READER_FILE))


@needs_rapidocr
def test_layercam_of_each_character_follows_reading_order(street_sign, detected, reader):
    """Per word, the column where each character's LayerCAM peaks rises with the character's index."""
    from camlens.models import ppocr

    crops, widths = zip(*(ppocr.word_crop(street_sign, box) for box in detected[2]))
    found = explain(reader.model, torch.cat(crops), reader.layer, ("layercam",), CTCTarget())
    correlations = []
    for image, width in enumerate(widths):
        rows = (found.image_index == image).nonzero().flatten()
        if len(rows) >= 2:
            correlations.append(reading_order(found.maps["layercam"][rows][:, :, :width]))
    assert len(correlations) >= 8
    assert min(correlations) >= 0.9, correlations


def test_the_command_line_explains_an_onnx_file_like_any_model(resnet, tmp_path, capsys):
    from camlens.cli import main

    from support import SAMPLE_IMAGES

    _, path = resnet
    out = tmp_path / "out"
    assert main(["explain", str(SAMPLE_IMAGES / "owl.jpg"), "--model", f"onnx:{path}", "--methods", "gradcam",
                 "--out", str(out)]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["model"] == f"onnx:{path}" and len(manifest["images"][0]["classes"]) == 1
    assert main(["layers", f"onnx:{path}"]) == 0
    assert "on a 64×64 input" in capsys.readouterr().out


@needs_rapidocr
def test_the_command_line_explains_each_character_of_a_word_photo(street_sign, detected, tmp_path):
    """A photo of one word, fitted into the reader's 48×320 input by its preprocessing (centred,
    padded), reads as RapidOCR's right-padded crop does, one map per character."""
    from camlens.cli import main

    word = next(box for box in detected[2] if (box[2] - box[0]) > 3 * (box[3] - box[1]))
    photo = tmp_path / "word.png"
    street_sign.crop(tuple(round(v) for v in word)).save(photo)
    out = tmp_path / "out"
    assert main(["explain", str(photo), "--model", "ppocr-rec", "--methods", "layercam", "--out", str(out)]) == 0
    characters = json.loads((out / "manifest.json").read_text())["images"][0]["classes"]
    positions = [c["position"] for c in characters]
    assert len(characters) >= 5 and positions == sorted(positions)
    assert "".join(c["name"] for c in characters).replace(" ", "") in {
        "PoliceStation", "Hospital-Airport", "Polpis-Wauwinet", "SiasconsetBikePath", "SurfsideBikePath",
        "WhalingMuseum", "InfoBur-RestRooms", "PeterFoulger&"}
