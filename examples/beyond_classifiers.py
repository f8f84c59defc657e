"""Draw README's "Beyond classifiers" pictures: a map per caption word, maps that follow the
question, a detection's map, and why two scenes match. Each uses a scene model of
``camlens.models.scenes`` (trained on first use, under a minute each, then cached).

    python examples/beyond_classifiers.py [--out docs/images]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from PIL import Image

import camlens
from camlens.data.scenes import SHAPES, Scene, scene_tensors, scenes

METHODS = ("gradcam", "layercam")
SHOWN = 192  # pixels per panel: the 64 px scenes, enlarged


def enlarged(scene: Scene) -> Image.Image:
    return scene.pil().resize((SHOWN, SHOWN), Image.NEAREST)


def panels(scene: Scene, explanation: camlens.Explanation, rows: list[int]) -> list[list[Image.Image]]:
    """One row per method: the scene, then the map of each chosen row of the explanation."""
    photo = enlarged(scene)
    return [[photo] + [camlens.overlay(photo, explanation.maps[m][row]) for row in rows] for m in METHODS]


def caption_figure(scene: Scene) -> Image.Image:
    captioner = camlens.load("scenes-captioner")
    (tokens,), target = captioner.caption(scene.caption, 1)
    explanation = camlens.explain(captioner.model, (scene_tensors([scene]), tokens), layer=captioner.layer,
                                  methods=METHODS, target=target)
    words = scene.caption.split()
    named = [i for i, index in enumerate(scene.caption_objects) if index is not None]
    titles = [[m] + [f"“{words[i]}”" for i in named] for m in METHODS]
    return camlens.grid(panels(scene, explanation, named), titles)


def vqa_figure(scene: Scene) -> Image.Image:
    vqa = camlens.load("scenes-vqa")
    questions = [f"what colour is the {o.shape} ?" for o in scene.objects]
    tokens = torch.cat([vqa.question(q, 1)[0] for q in questions])
    images = scene_tensors([scene]).expand(len(questions), -1, -1, -1)
    explanation = camlens.explain(vqa.model, (images, tokens), layer=vqa.layer, methods=METHODS)
    answers = [vqa.class_names[int(c)] for c in explanation.targets]
    titles = [[m] + [f"{q[:-2]}? {a}" for q, a in zip(questions, answers)] for m in METHODS]
    return camlens.grid(panels(scene, explanation, list(range(len(questions)))), titles, panel_inches=2.9)


def box_figure(scene: Scene) -> Image.Image:
    detector = camlens.load("scenes-detector")
    target = camlens.BoxTarget([o.box for o in scene.objects], [SHAPES.index(o.shape) for o in scene.objects])
    explanation = camlens.explain(detector.model, scene_tensors([scene]), layer=detector.layer, methods=METHODS,
                                  target=target)
    scale = SHOWN / scene.size
    figure = []
    for row in panels(scene, explanation, list(range(len(scene.objects)))):
        boxed = [row[0]] + [camlens.draw_box(picture, tuple(v * scale for v in o.box))
                            for picture, o in zip(row[1:], scene.objects)]
        figure.append(boxed)
    titles = [[m] + [f"the {o.shape}'s detection" for o in scene.objects] for m in METHODS]
    return camlens.grid(figure, titles)


def similarity_figure(query: Scene, reference: Scene) -> Image.Image:
    classifier = camlens.load("scenes-classifier")
    embedding = classifier.embedding
    with torch.no_grad():
        features = embedding(scene_tensors([query, reference]))
    explanation = camlens.explain(embedding, scene_tensors([query, reference]), layer=f"model.{classifier.layer}",
                                  methods=METHODS, target=camlens.SimilarityTarget(features.flip(0)))
    shared = {(o.colour, o.shape) for o in query.objects} & {(o.colour, o.shape) for o in reference.objects}
    rows = []
    for m in METHODS:
        rows.append([enlarged(query), camlens.overlay(enlarged(query), explanation.maps[m][0]),
                     enlarged(reference), camlens.overlay(enlarged(reference), explanation.maps[m][1])])
    score = float(explanation.scores[0])
    titles = [["query", f"{m}: why it matches", "reference", f"{m}: why it matches"] for m in METHODS]
    labels = [f"shared: {' '.join(next(iter(shared)))}, cosine {score:.2f}"] * len(METHODS)
    return camlens.grid(rows, titles, labels)


def share_one_object(a: Scene, b: Scene) -> bool:
    """Exactly one object in common, and no other colour or shape."""
    kinds = lambda scene: {(o.colour, o.shape) for o in scene.objects}  # noqa: E731
    colours = {c for c, _ in kinds(a)} & {c for c, _ in kinds(b)}
    shapes = {s for _, s in kinds(a)} & {s for _, s in kinds(b)}
    return len(kinds(a) & kinds(b)) == len(colours) == len(shapes) == 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="docs/images")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    pool = scenes(400, seed=31)
    three = next(s for s in pool if len(s.objects) == 3)
    caption_figure(three).save(out / "scenes_caption.png")
    vqa_figure(three).save(out / "scenes_vqa.png")
    box_figure(next(s for s in pool if len(s.objects) == 3 and s is not three)).save(out / "scenes_box.png")
    pairs = ((a, b) for a in pool for b in pool if a is not b and len(a.objects) == len(b.objects) == 2
             and share_one_object(a, b))
    query, reference = next(pairs)
    similarity_figure(query, reference).save(out / "scenes_similarity.png")
    print(f"wrote scenes_caption.png, scenes_vqa.png, scenes_box.png and scenes_similarity.png to {out}/")


if __name__ == "__main__":
    main()
