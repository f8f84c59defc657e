"""Why do two photos match? README's similarity pair, and its numbers.

EfficientNet-Lite0's pooled features (1280-d, the embedding its classifier reads) embed every photo
of the shared data's ``imagenet_sample_1000``; for a query photo, its nearest neighbour there by
cosine similarity; then, on each side, the map of the similarity to the other photo's embedding
(:class:`camlens.targets.SimilarityTarget`) by Grad-CAM and LayerCAM. Run from the checkout:
``.venv/bin/python docs/similarity_pair.py [QUERY]`` (default: the Coral test data's ``cat.png``);
it writes ``docs/images/similarity_pair.jpg`` and prints the neighbours.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import torch
from torch.nn import functional as F

import camlens
from camlens.data import read_image, stream_photos
from camlens.report import grid, overlay
from camlens.targets import SimilarityTarget

DATA = Path(os.environ.get("CAMLENS_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
OUT = Path(__file__).resolve().parent / "images" / "similarity_pair.jpg"
METHODS = ("gradcam", "layercam")


def embed(embedding: torch.nn.Module, preprocess, paths: list[Path]) -> torch.Tensor:
    """Unit-length embeddings (N, D) of the photos at ``paths`` (decoded by background threads)."""
    with torch.inference_mode():
        return torch.cat([F.normalize(embedding(batch.tensor), dim=1)
                          for batch in stream_photos(paths, preprocess, batch_size=50)])


def main(query_path: Path) -> None:
    loaded = camlens.load("efficientnet-lite0")
    embedding, preprocess = loaded.embedding, loaded.preprocessing
    candidates = sorted((DATA / "imagenet_sample_1000").glob("*.JPEG"))
    similarity = embed(embedding, preprocess, candidates) @ embed(embedding, preprocess, [query_path])[0]
    best = similarity.topk(3)
    for value, index in zip(best.values.tolist(), best.indices.tolist()):
        print(f"{value:.3f}  {candidates[index].name}")
    neighbour_path = candidates[int(best.indices[0])]
    photos = [read_image(query_path), read_image(neighbour_path)]
    images = torch.stack([preprocess(photo) for photo in photos])
    with torch.no_grad():
        embeddings = embedding(images)
    # each photo explained against the other one's embedding
    explanation = camlens.explain(embedding, images, f"model.{loaded.layer}", METHODS,
                                  SimilarityTarget(embeddings.flip(0)))
    panels = [[photo] + [overlay(photo, explanation.maps[m][row], preprocess.crop_box(photo.size)) for m in METHODS]
              for row, photo in enumerate(photos)]
    titles = [["photo", *(camlens.METHODS[m].title for m in METHODS)]] * 2
    labels = [f"query {query_path.name}: why it matches the neighbour (cosine {float(best.values[0]):.2f})",
              f"nearest of imagenet_sample_1000, {neighbour_path.name}: why it matches the query"]
    OUT.parent.mkdir(exist_ok=True)
    grid(panels, titles, labels, panel_size=240).save(OUT, quality=85)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else DATA / "coral_test_images" / "cat.png")
