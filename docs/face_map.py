"""Where MTCNN looks: README's face picture. On the Coral test data's ``grace_hopper.png``, MTCNN's
box of the face (green), and Grad-CAM of P-Net's face probability summed inside that box (the whole
photo at the scale where the face is 20 px) and of O-Net's face logit on the crop MTCNN gives it,
each at its default layer. Run from the checkout: ``.venv/bin/python docs/face_map.py``; it writes
``docs/images/face_map.jpg``.
"""

from __future__ import annotations

import os
from pathlib import Path

from PIL import Image

import camlens
from camlens.data.geometry import boxes_in_input
from camlens.models import faces
from camlens.report import draw_box, grid, overlay
from camlens.report.pictures import SAVE_OPTIONS
from camlens.targets.regions import BoxRegion

DATA = Path(os.environ.get("CAMLENS_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
OUT = Path(__file__).resolve().parent / "images" / "face_map.jpg"


def main() -> None:
    photo = Image.open(DATA / "coral_test_images" / "grace_hopper.png").convert("RGB")
    face = faces.detect_faces(photo)[0]
    pnet, onet = faces.mtcnn_pnet(), faces.mtcnn_onet()
    preprocessing = faces.pnet_preprocessing(faces.pnet_size(face.box, photo.size))
    box = boxes_in_input([face.box], photo.size, preprocessing)[0]
    size = preprocessing.crop
    whole = camlens.explain(pnet.model, preprocessing(photo)[None], pnet.layer, "gradcam", BoxRegion(box, (size, size)))
    crop, region = faces.face_input(photo, face, faces.ONET_SIZE)
    scored = camlens.explain(onet.model, crop, onet.layer, "gradcam", 1)
    panels = [draw_box(overlay(photo, whole.maps["gradcam"][0], preprocessing.crop_box(photo.size), max_side=None),
                       face.box),
              draw_box(overlay(photo, scored.maps["gradcam"][0], region, max_side=None), face.box)]
    titles = [f"P-Net {pnet.layer} ({size} px): face probability in the box",
              f"O-Net {onet.layer}: face logit of its crop (p = {face.probability:.4f})"]
    grid([panels], [titles], panel_size=340).save(OUT, **SAVE_OPTIONS["jpg"])
    print(f"wrote {OUT} ({OUT.stat().st_size // 1024} KB)")


if __name__ == "__main__":
    main()
