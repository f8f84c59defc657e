"""MTCNN's networks as models to explain (camlens.models.faces), on Grace Hopper's photo: the
detection, the crops MTCNN feeds its networks, the wrappers' numbers, and the default layers —
chosen because their maps peak on the face where an earlier block's do not."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from camlens import explain
from camlens.data.geometry import boxes_in_input
from camlens.metrics.localization import box_iou, boxes_mask, energy_in, pointing_hit
from camlens.models import faces
from camlens.targets.regions import BoxRegion

facenet = pytest.importorskip("facenet_pytorch", reason=faces.INSTALL)

# MTCNN's box of Grace Hopper's face with facenet-pytorch 2.6.0 (the photo is 512 × 600)
HOPPER_FACE = (177.3, 113.4, 352.0, 328.0)


@pytest.fixture(scope="module")
def photo(shared_data) -> Image.Image:
    return Image.open(shared_data("coral_test_images/grace_hopper.png")).convert("RGB")


@pytest.fixture(scope="module")
def face(photo) -> faces.Face:
    found = faces.detect_faces(photo)
    assert len(found) == 1, found
    return found[0]


@pytest.fixture(scope="module")
def pnet():
    return faces.mtcnn_pnet()


@pytest.fixture(scope="module")
def onet():
    return faces.mtcnn_onet()


def pnet_case(pnet, photo, face):
    """P-Net's input for the photo at the scale where the face is 20 px, the face's box in it, and
    the target: the face probability summed inside the box."""
    preprocessing = faces.pnet_preprocessing(faces.pnet_size(face.box, photo.size))
    box = boxes_in_input([face.box], photo.size, preprocessing)[0]
    size = preprocessing.crop
    return preprocessing(photo)[None], box, BoxRegion(box, (size, size))


def onet_case(photo, face):
    """O-Net's input as MTCNN crops it, and MTCNN's box (O-Net's own refinement) in that crop."""
    inputs, region = faces.face_input(photo, face, faces.ONET_SIZE)
    return inputs, faces.box_in_crop(face.box, region, faces.ONET_SIZE), 1


def localization(model, inputs, box, target, layer, methods):
    """Per method: whether the input-resolution map peaks inside the box, its share of energy
    there, and the box's share of the input."""
    explanation = explain(model, inputs, layer, methods, target)
    mask = boxes_mask([box], tuple(inputs.shape[-2:]))
    return {method: (pointing_hit(explanation.maps[method][0], mask, tolerance=0),
                     energy_in(explanation.maps[method][0], mask), float(mask.float().mean())) for method in methods}


def test_mtcnn_finds_grace_hoppers_face(face):
    assert face.probability > 0.99
    assert box_iou(face.box, HOPPER_FACE) > 0.95
    assert all(isinstance(value, float) for value in (*face.box, face.probability, *face.square))


def test_face_input_is_exactly_what_mtcnn_gives_o_net(photo, face):
    detector = facenet.MTCNN(keep_all=True, device=torch.device("cpu"))
    seen = []
    detector.onet.register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    detector.detect(photo)
    shown = torch.cat(seen)
    inputs, region = faces.face_input(photo, face, faces.ONET_SIZE)
    assert any(torch.equal(inputs[0], candidate) for candidate in shown)
    x0, y0, x1, y1 = region
    assert x0 <= face.box[0] and x1 >= face.box[2] and x1 - x0 == y1 - y0  # a square around the face


def test_r_net_scores_its_crop_of_the_face_as_a_face(photo, face):
    inputs, _ = faces.face_input(photo, face, faces.RNET_SIZE)
    assert inputs.shape == (1, 3, 24, 24)
    assert faces.mtcnn_rnet().model(inputs).softmax(dim=1)[0, 1] > 0.7  # MTCNN's R-Net threshold


def test_the_wrappers_give_the_raw_networks_numbers(photo, face, pnet, onet):
    from facenet_pytorch.models.mtcnn import ONet, PNet, RNet

    whole = faces.pnet_preprocessing(64)(photo)[None]
    torch.testing.assert_close(pnet.model(whole), PNet().eval()(whole)[1][:, 1:2])
    for loaded, raw, size in ((onet, ONet(), 48), (faces.mtcnn_rnet(), RNet(), 24)):
        inputs, _ = faces.face_input(photo, face, size)
        logits = loaded.model(inputs)
        assert logits.shape == (1, 2) and loaded.class_names == ("no face", "face")
        torch.testing.assert_close(logits.softmax(dim=1), raw.eval()(inputs)[-1])
    inputs, _ = faces.face_input(photo, face, 48)
    assert onet.model(inputs).softmax(dim=1)[0, 1].item() == pytest.approx(face.probability, abs=1e-6)


def test_the_preprocessing_is_mtcnns_normalization(photo, onet):
    pixels = torch.tensor([0.0, 127.5, 255.0])
    mean, std = onet.preprocessing.mean[0], onet.preprocessing.std[0]
    torch.testing.assert_close((pixels / 255 - mean) / std, (pixels - 127.5) / 128)


def test_the_wrapped_networks_layers_keep_facenets_names(pnet, onet):
    assert isinstance(pnet.model.get_submodule(faces.PNET_LAYER), torch.nn.PReLU)
    assert isinstance(onet.model.get_submodule("net.conv4"), torch.nn.Conv2d)


@pytest.mark.parametrize("network", ["pnet", "onet"])
@pytest.mark.parametrize("method", ["gradcam", "layercam"])
def test_default_layer_maps_peak_on_the_face_with_most_energy_there(network, method, photo, face, pnet, onet):
    if network == "pnet":
        model, layer, (inputs, box, target) = pnet.model, pnet.layer, pnet_case(pnet, photo, face)
    else:
        model, layer, (inputs, box, target) = onet.model, onet.layer, onet_case(photo, face)
    inside, energy, _ = localization(model, inputs, box, target, layer, [method])[method]
    assert inside and energy >= 0.5


def test_o_net_grad_cam_is_more_concentrated_on_the_face_than_a_flat_map(photo, face, onet):
    # MTCNN's box is three quarters of O-Net's crop: a flat map would put 74% of its energy inside
    inside, energy, share = localization(onet.model, *onet_case(photo, face), onet.layer, ["gradcam"])["gradcam"]
    assert inside and energy > share + 0.1


@pytest.mark.parametrize("network, earlier", [("pnet", ["net.prelu1", "net.prelu2"]),
                                              ("onet", ["net.prelu1", "net.prelu2", "net.prelu3"])])
def test_the_default_layer_localizes_where_earlier_blocks_peak_off_the_face(network, earlier, photo, face, pnet, onet):
    loaded = pnet if network == "pnet" else onet
    inputs, box, target = pnet_case(pnet, photo, face) if network == "pnet" else onet_case(photo, face)
    inside, energy, _ = localization(loaded.model, inputs, box, target, loaded.layer, ["gradcam"])["gradcam"]
    assert inside and energy >= 0.5
    for layer in earlier:
        inside, energy, _ = localization(loaded.model, inputs, box, target, layer, ["gradcam"])["gradcam"]
        assert not inside and energy < 0.6, layer
