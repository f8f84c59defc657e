"""The synthetic scenes: the same for the same seed, and their ground truth consistent with the pixels."""

from __future__ import annotations

import numpy as np
import pytest

from camlens.data.scenes import ANSWERS, COLOURS, LABELS, SHAPES, VOCABULARY, scene_tensors, scenes


def test_the_same_seed_gives_the_same_scenes_and_another_seed_others():
    first, again, other = scenes(5, seed=3), scenes(5, seed=3), scenes(5, seed=4)
    assert all(np.array_equal(a.image, b.image) for a, b in zip(first, again))
    assert [a.caption for a in first] == [b.caption for b in again]
    assert not all(np.array_equal(a.image, b.image) for a, b in zip(first, other))


def test_objects_are_distinct_apart_and_their_masks_lie_in_their_boxes():
    for scene in scenes(60, seed=1):
        assert 1 <= len(scene.objects) <= 4
        assert len({o.shape for o in scene.objects}) == len({o.colour for o in scene.objects}) == len(scene.objects)
        assert [o.centre[0] for o in scene.objects] == sorted(o.centre[0] for o in scene.objects)
        union = np.zeros_like(scene.objects[0].mask, dtype=int)
        for o in scene.objects:
            x0, y0, x1, y1 = map(int, o.box)
            assert o.mask.sum() >= 20 and o.mask[y0:y1, x0:x1].sum() == o.mask.sum()
            union += o.mask
        assert union.max() == 1  # no two objects share a pixel


def test_an_objects_pixels_have_its_colour():
    rgb = {"red": 0, "green": 1, "blue": 2}
    for scene in scenes(30, seed=2):
        for o in scene.objects:
            pixels = scene.image[o.mask].astype(float).mean(axis=0)
            if o.colour in rgb:
                assert pixels.argmax() == rgb[o.colour]
            else:  # yellow: red and green high, blue low
                assert min(pixels[0], pixels[1]) > 2 * pixels[2]


def test_labels_caption_and_questions_describe_the_objects():
    scene = next(s for s in scenes(50, seed=5) if len(s.objects) == 3)
    present = {o.shape for o in scene.objects} | {o.colour for o in scene.objects}
    assert {LABELS[i] for i in np.nonzero(scene.labels.numpy())[0]} == present
    words = scene.caption.split()
    assert len(words) == len(scene.caption_objects) == 3 * 3 + 2
    for word, index in zip(words, scene.caption_objects):
        assert (index is None) == (word in ("a", "and"))
        if index is not None:
            assert word in (scene.objects[index].shape, scene.objects[index].colour)
    for question in scene.questions:
        asked = scene.objects[question.about]
        assert question.answer in (asked.colour, asked.shape) and question.answer not in question.text
        assert ANSWERS[question.answer_index] == question.answer
    assert VOCABULARY.decode(VOCABULARY.encode(scene.caption)) == scene.caption


def test_scene_tensors_scale_pixels_to_minus_one_one():
    batch = scenes(2, seed=0)
    tensor = scene_tensors(batch)
    assert tensor.shape == (2, 3, 64, 64)
    assert float(tensor[0, 0, 0, 0]) == pytest.approx(batch[0].image[0, 0, 0] / 127.5 - 1)
    assert set(SHAPES) | set(COLOURS) == set(LABELS)


def test_unknown_words_are_refused_with_the_vocabulary():
    with pytest.raises(ValueError, match="unknown word.*'purple'.*the vocabulary is a, and"):
        VOCABULARY.encode("what colour is the purple object ?")
