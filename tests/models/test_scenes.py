"""The scene models: trained deterministically, cached, accurate on held-out scenes, and in the zoo."""

from __future__ import annotations

import pytest
import torch

import camlens
from camlens.data.scenes import scene_tensors as scenes_tensor
from camlens.data.scenes import scenes
from camlens.models.scene_training import BIASED, REBALANCED, SHIPPED, Recipe, accuracy, cache_folder, load_scene_model, train
from camlens.models.scenes import SCENE_TASKS

# held-out accuracy each model must keep (the goals: classification 95%, answers 90%,
# caption words 90%); measured on scenes none of them was trained on
GOALS = {"classifier": ("exact", 0.95), "vqa": ("answers", 0.90), "captioner": ("words", 0.90),
         "detector": ("recall", 0.95), "vit": ("exact", 0.90)}


@pytest.fixture(scope="module")
def held_out():
    return scenes(150, seed=777)


@pytest.mark.parametrize("task", sorted(GOALS))
def test_held_out_accuracy(task, held_out):
    metric, goal = GOALS[task]
    assert accuracy(task, load_scene_model(task, progress=False), held_out)[metric] >= goal


def test_training_is_deterministic():
    recipe = Recipe("classifier", scenes=64, steps=3, batch=8)
    first, second = train(recipe, progress=False), train(recipe, progress=False)
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), second.state_dict().values()))
    other = train(Recipe("classifier", seed=1, scenes=64, steps=3, batch=8), progress=False)
    assert not torch.equal(first.fc.weight, other.fc.weight)


def test_the_captioner_and_vqa_read_the_classifier_s_frozen_backbone():
    classifier = load_scene_model("classifier", progress=False).backbone.state_dict()
    for task in ("captioner", "vqa"):
        backbone = load_scene_model(task, progress=False).backbone.state_dict()
        assert all(torch.equal(classifier[name], value) for name, value in backbone.items()), task
    detector = load_scene_model("detector", progress=False).backbone.state_dict()
    assert not torch.equal(classifier["layer4.0.weight"], detector["layer4.0.weight"])  # trained whole


def test_a_new_classifier_recipe_retrains_what_builds_on_it(monkeypatch):
    from camlens.models import scene_training

    assert Recipe("captioner", seed=1).pretrained == Recipe("classifier", seed=1)
    before = Recipe("captioner").key(), Recipe("vqa").key(), Recipe("detector").key()
    steps, batch, rate, version = scene_training._SCHEDULE["classifier"]
    monkeypatch.setitem(scene_training._SCHEDULE, "classifier", (steps, batch, rate, version + 1))
    after = Recipe("captioner").key(), Recipe("vqa").key(), Recipe("detector").key()
    assert before[0] != after[0] and before[1] != after[1] and before[2] == after[2]
    assert Recipe("detector").pretrained is None and Recipe("classifier").pretrained is None
    assert Recipe("classifier", learning_rate=0.02).key() != Recipe("classifier").key()


def test_the_cache_is_read_not_retrained(monkeypatch, tmp_path):
    monkeypatch.setenv("CAMLENS_CACHE", str(tmp_path))
    small = Recipe("detector", scenes=64, steps=3, batch=8)  # not shipped: trained, then cached
    trained = load_scene_model(small, progress=False)
    assert [p.name for p in (tmp_path / "scenes").glob("detector-*.pt")] == [f"detector-{small.key()}.pt"]
    monkeypatch.setattr("camlens.models.scene_training.train", lambda *a, **k: pytest.fail("retrained a cached model"))
    cached = load_scene_model(small, progress=False)
    assert all(torch.equal(a, b) for a, b in zip(trained.state_dict().values(), cached.state_dict().values()))


def test_the_default_recipes_ship_and_load_without_training(monkeypatch, tmp_path):
    """One file per task, named by its default recipe's hash: a recipe changed without running
    ``python -m camlens.models.scene_training`` fails here rather than training on first use."""
    shipped = [Recipe(t) for t in SCENE_TASKS] + [BIASED, REBALANCED]
    assert sorted(p.name for p in SHIPPED.glob("*.pt")) == sorted(f"{r.task}-{r.key()}.pt" for r in shipped)
    monkeypatch.setenv("CAMLENS_CACHE", str(tmp_path))  # an empty cache
    monkeypatch.setattr("camlens.models.scene_training.train", lambda *a, **k: pytest.fail("trained a shipped model"))
    for recipe in shipped:
        load_scene_model(recipe, progress=False)
    assert not (tmp_path / "scenes").exists()


def test_the_recipe_still_trains_the_shipped_classifier(held_out):
    """The shipped weights are what the code trains: the default classifier recipe, trained here
    from scratch (about a minute), reaches its goal and agrees with the shipped classifier on
    held-out scenes (floating-point sums differ between machines, so not bit for bit)."""
    metric, goal = GOALS["classifier"]
    trained, shipped = train(Recipe("classifier"), progress=False), load_scene_model("classifier", progress=False)
    assert accuracy("classifier", trained, held_out)[metric] >= goal
    images = scenes_tensor(held_out)
    with torch.inference_mode():
        agreement = ((trained(images) > 0) == (shipped(images) > 0)).all(dim=1).float().mean()
    assert agreement >= 0.97


def test_the_zoo_loads_them_with_their_task_and_text_inputs():
    vqa = camlens.load("scenes-vqa")
    assert vqa.task == "vqa" and vqa.layer == "backbone.layer4" and vqa.class_names[0] == "red"
    (question,) = vqa.question("what colour is the circle ?", 2)
    assert question.shape == (2, 8)
    captioner = camlens.load("scenes-captioner")
    (prefix,), target = captioner.caption("a red circle", 1)
    assert prefix[0, :4].tolist() == [1, *[captioner.class_names.index(w) for w in ("a", "red", "circle")]]
    assert target.words == [0, 1, 2]
    with pytest.raises(ValueError, match="unknown word"):
        captioner.caption("a purple circle", 1)
    assert camlens.load("scenes-classifier").embedding is not None


def test_the_scene_vit_declares_its_layout_and_auto_finds_its_layer():
    """A class-token model: ``auto`` goes to its last block's first norm, the zoo's layer, and its
    tokens lie on the 8×8 patch grid it declares."""
    from camlens.data.scenes import scene_tensors
    from camlens.models.zoo import SCENE_VIT_LAYER

    model = load_scene_model("vit", progress=False)
    images = scene_tensors(scenes(2, seed=3))
    assert camlens.auto_layer(model, images) == SCENE_VIT_LAYER == camlens.load("scenes-vit").layer
    explanation = camlens.explain(model, images, methods=("gradcam", "rollout"))
    assert explanation.layer_maps["gradcam"].shape == explanation.layer_maps["rollout"].shape[:1] + (8, 8)
