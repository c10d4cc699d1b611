"""In-context learning reproduction end to end: recipes, `mambapoc run` on a tiny recipe, and the
shipped small models."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from mambapoc.cli import main
from mambapoc.errors import UserError
from mambapoc.paper.recipe import is_paper_recipe, load_paper_recipe


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    # Tiny models gain nothing from threads, and idle-spinning threads stall on a busy machine.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


ROOT = Path(__file__).resolve().parents[1]
SMALL = ROOT / "recipes" / "paper-icl-small.yaml"
FULL = ROOT / "recipes" / "paper-icl-full.yaml"

TINY = {
    "kind": "paper-icl", "name": "tiny", "seed": 0,
    "task": {"function": "linear", "n_dims": 3},
    "curriculum": {"dims": {"start": 2, "end": 3}, "points": {"start": 5, "end": 7, "inc": 2}, "interval": 5},
    "models": {"T": {"family": "gpt2", "hidden_size": 16, "num_hidden_layers": 2, "num_attention_heads": 2},
               "M": {"family": "mamba", "hidden_size": 16, "num_hidden_layers": 2, "state_size": 4}},
    "train": {"steps": 12, "batch_size": 8, "lr": 0.001, "checkpoint_every": 6},
    "device": "cpu",
    "eval": {"prompts": 32, "batch_size": 16, "shifts": ["standard", "noisy"]},
    "probe": {"prompts": 32, "fit_positions": 4},
}


def write(tmp_path: Path, recipe: dict, name: str = "r.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(recipe))
    return path


def test_shipped_recipes_load_with_the_papers_settings():
    small, full = load_paper_recipe(SMALL), load_paper_recipe(FULL)
    assert small.weights is not None and small.weights.is_dir() and not small.retrain
    assert small.eval_points >= 3 * small.train_points and small.eval_prompts >= 1280
    assert full.task.n_dims == 20 and full.train_points == 41 and full.schedule.steps == 500_000
    assert full.schedule.batch_size == 64 and full.weights is None
    assert {m["family"]: m["num_hidden_layers"] for m in full.models.values()} == {"gpt2": 12, "mamba": 24}
    assert is_paper_recipe(SMALL) and not is_paper_recipe(ROOT / "recipes" / "demo.yaml")


@pytest.mark.parametrize("change,message", [
    ({"task": {"function": "cubic", "n_dims": 3}}, "task.function: expected one of"),
    ({"train": {"steps": 0, "lr": 0.1}}, "train.steps: expected a value >= 1"),
    ({"models": {"T": {"family": "gpt2", "layers": 2}}}, "models.T.layers: unknown gpt2 setting"),
    ({"eval": {"shifts": ["sideways"]}}, "eval.shifts: expected one of"),
    ({"retrain": "yes"}, "retrain: expected true or false"),
    ({"colour": 1}, "colour: unknown section"),
])
def test_recipe_errors_name_the_field(tmp_path, change, message):
    with pytest.raises(UserError, match=message):
        load_paper_recipe(write(tmp_path, {**TINY, **change}))


def test_run_trains_evaluates_probes_and_reports(tmp_path, capsys):
    out = tmp_path / "run"
    main(["run", str(write(tmp_path, TINY)), "--out", str(out)])
    assert f"Report: {(out / 'report.html').resolve()}" in capsys.readouterr().out
    results = json.loads((out / "results.json").read_text())
    assert set(results["eval"]) == {"standard", "noisy"}
    assert {"T", "M", "least squares", "3-nearest neighbours", "averaging"} <= set(results["eval"]["standard"])
    assert len(results["eval"]["standard"]["M"]["mean"]) == 21  # 3x the 7 training points
    assert results["probe"]["layers"]["T"]["x"] == [0, 1, 2]
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 4 and "http" not in html
    assert '<section id="probing">' in html and "not rerun here" not in html  # the report package's page
    for name in ("T", "M"):
        assert (out / "weights" / name / "model.safetensors").is_file()
    # The run's weights directory is what a recipe's `weights:` reads: evaluating it needs no training.
    reuse = write(tmp_path, {**TINY, "weights": "run/weights"}, "reuse.yaml")
    main(["run", str(reuse), "--out", str(tmp_path / "again")])
    assert not (tmp_path / "again" / "weights").exists()
    assert json.loads((tmp_path / "again" / "results.json").read_text())["training"] == results["training"]
    assert "recorded when the shipped weights were trained" in (tmp_path / "again" / "report.html").read_text()


def test_weights_trained_with_other_settings_are_refused(tmp_path, capsys):
    path = write(tmp_path, {**TINY, "weights": str(load_paper_recipe(SMALL).weights)})
    with pytest.raises(SystemExit):
        main(["run", str(path), "--out", str(tmp_path / "run")])
    assert "trained with other" in capsys.readouterr().err


def test_a_non_empty_run_directory_needs_resume(tmp_path, capsys):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "x").write_text("")
    with pytest.raises(SystemExit):
        main(["run", str(write(tmp_path, TINY)), "--out", str(tmp_path / "run")])
    assert "is not empty" in capsys.readouterr().err


def test_shipped_small_models_learn_linear_functions_in_context(tmp_path):
    """The shipped pair, re-evaluated on fresh prompts: within the training length both are close to
    least squares, as the recipe's report shows."""
    raw = yaml.safe_load(SMALL.read_text())
    raw["weights"] = str(SMALL.parent / raw["weights"])
    raw["eval"] = {**raw.get("eval", {}), "prompts": 512, "shifts": ["standard"]}
    raw["probe"] = {**raw.get("probe", {}), "prompts": 128}
    out = tmp_path / "run"
    main(["run", str(write(tmp_path, raw)), "--out", str(out)])
    results = json.loads((out / "results.json").read_text())
    d = raw["task"]["n_dims"]
    for name in raw["models"]:
        curve = results["eval"]["standard"][name]
        assert curve["mean"][2 * d] <= 0.2, (name, curve["mean"][2 * d])
