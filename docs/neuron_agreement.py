"""README's neuron-text measurement: on ``scenes-classifier``, the channels of a 300-scene probe
set are named by Network Dissection, and for every label of 100 held-out scenes the Grad-CAM top-5
channels' concepts are compared with the label explained (a channel that detects no concept is a
miss). Printed: the agreement overall and per label, chance (a channel drawn at random), and how
many channels detect no concept. Run from the checkout: ``.venv/bin/python docs/neuron_agreement.py``
(about a minute on 2 CPU cores).
"""

from __future__ import annotations

import camlens
from camlens.data.scenes import LABELS, scene_concepts, scene_tensors, scenes
from camlens.evaluate.concepts import NO_CONCEPT, chance_agreement, concept_agreement, dissect, scene_texts


def main() -> None:
    model = camlens.load("scenes-classifier")
    probe = scenes(300, seed=7)
    dissection = dissect(model.model, model.layer, scene_tensors(probe), scene_concepts(probe))
    names = dissection.names()
    texts, explained = scene_texts(model, dissection, scenes(100, seed=2026))
    chance = chance_agreement(dissection, explained)
    print(f"channels: {len(names)}, detecting no concept: {names.count(NO_CONCEPT)}")
    print(f"agreement of the top-5 channels' concepts with the label: {concept_agreement(texts, explained):.2f} "
          f"(chance {chance:.2f}) over {len(texts)} explained labels")
    for label in LABELS:
        mine = [(t, e) for t, e in zip(texts, explained) if e == label]
        if mine:
            share = concept_agreement([t for t, _ in mine], [e for _, e in mine])
            print(f"  {label}: {share:.2f} ({len(mine)} labels, {names.count(label)} channels named {label})")


if __name__ == "__main__":
    main()
