"""Similarity on a real embedding: EfficientNet-Lite0's pooled features, a boxed ImageNet photo,
and its nearest neighbour among the 1000 photos of ``imagenet_sample_1000``. Where the neighbour
is of the photo's own class, why the two match should be the object: the similarity map puts more
of its energy inside the photo's box than the box's share of the image. (Measured: 6 of the 21
boxed photos have a same-class neighbour, and every one passes by Grad-CAM and LayerCAM; across
all 21 the maps beat the box's share in 14, e.g. a paddle's nearest is a suspension bridge and
its map lies on the water.)"""

from __future__ import annotations

import csv

import pytest
import torch
from torch.nn import functional as F

import camlens
from camlens.data import boxes_in_input, read_image, stream_photos
from camlens.metrics.localization import boxes_mask, energy_in
from camlens.targets import SimilarityTarget

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def sample_embeddings(shared_data):
    """The unit-length embeddings (1000, 1280) of imagenet_sample_1000 and the photos' classes."""
    loaded = camlens.load("efficientnet-lite0")
    folder = shared_data("imagenet_sample_1000")
    rows = list(csv.DictReader(open(folder / "labels.csv")))
    with torch.inference_mode():
        embeddings = torch.cat([F.normalize(loaded.embedding(batch.tensor), dim=1) for batch in
                                stream_photos([folder / row["filename"] for row in rows], loaded.preprocessing, 50)])
    return loaded, [folder / row["filename"] for row in rows], [int(row["index"]) for row in rows], embeddings


def test_similarity_maps_lie_on_the_object_when_the_nearest_photo_is_of_its_class(shared_data, sample_embeddings):
    loaded, paths, classes, embeddings = sample_embeddings
    annotations = list(csv.DictReader(open(shared_data("imagenet_val_bbox/annotations.csv"))))
    preprocess, embedding = loaded.preprocessing, loaded.embedding
    same_class = 0
    for name in dict.fromkeys(row["file"] for row in annotations):
        rows = [row for row in annotations if row["file"] == name]
        photo = read_image(shared_data("imagenet_val_bbox") / name)
        query = preprocess(photo)[None]
        with torch.no_grad():
            nearest = int((embeddings @ F.normalize(embedding(query), dim=1)[0]).argmax())
        if classes[nearest] != int(rows[0]["class_index"]):
            continue
        same_class += 1
        neighbour = preprocess(read_image(paths[nearest]))[None]
        with torch.no_grad():
            reference = embedding(neighbour)[0]
        explanation = camlens.explain(embedding, query, f"model.{loaded.layer}", ["gradcam", "layercam"],
                                      SimilarityTarget(reference))
        boxes = [tuple(float(row[k]) for k in ("x0_file", "y0_file", "x1_file", "y1_file")) for row in rows]
        box = boxes_mask(boxes_in_input(boxes, photo.size, preprocess), query.shape[-2:])
        share = float(box.float().mean())
        for method in ("gradcam", "layercam"):
            inside = energy_in(explanation.maps[method][0], box)
            assert inside > share, f"{name} ({rows[0]['class_name']}), {method}: {inside:.2f} inside, box {share:.2f}"
        # the other side: why the neighbour matches the photo is a map of its own, not a copy
        other = camlens.explain(embedding, neighbour, f"model.{loaded.layer}", "gradcam",
                                SimilarityTarget(embedding(query)[0].detach()))
        assert float(other.scores[0]) == pytest.approx(float(explanation.scores[0]), abs=1e-5)  # cosine is symmetric
    assert same_class >= 5
