"""Training recipes are checked up front, and a device setting resolves to one torch can use."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mambapoc.envinfo import pick_device
from mambapoc.errors import UserError
from mambapoc.train.recipe import load_train_recipe

BUNDLED = Path(__file__).parent.parent / "recipes" / "bundled-tiny.yaml"


def test_the_bundled_recipe_describes_a_matched_pair():
    r = load_train_recipe(BUNDLED)
    assert set(r.models) == {"mamba-tiny", "transformer-tiny"}
    assert r.device == "auto" and r.workers >= 0
    assert all(p.is_dir() for p in r.paths)


@pytest.mark.parametrize("old,new,message", [
    ("  workers: ", "  workers: -", "train.workers"),
    ("  workers: ", "  worker: ", "train.worker: unknown setting"),
    ("  workers: ", "  workers: x", "train.workers: expected an integer"),
])
def test_bad_train_settings_are_named(tmp_path, old, new, message):
    assert old in BUNDLED.read_text()
    text = BUNDLED.read_text().replace(old, new, 1)
    recipe = tmp_path / "r.yaml"
    recipe.write_text(text.replace("../sample_data", str(BUNDLED.parent.parent / "sample_data")))
    with pytest.raises(UserError, match=message):
        load_train_recipe(recipe)


def test_pick_device():
    assert pick_device("cpu") == "cpu"
    assert pick_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(UserError, match="use auto, cpu or cuda"):
        pick_device("gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="no CUDA GPU"):
            pick_device("cuda")
