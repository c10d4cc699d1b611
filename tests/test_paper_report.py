"""The paper recipe's report, from made-up results: written through the report package's HTML writer, with
the recipe's text escaped, the charts inline, and the training figures of shipped weights said to be so."""

from __future__ import annotations

import re
from pathlib import Path

import torch
import yaml

from mambapoc.fsutil import write_atomic
from mambapoc.paper.evaluate import Curve
from mambapoc.paper.probe import ProbeResult
from mambapoc.paper.recipe import load_paper_recipe
from mambapoc.paper.report import write_report

RECIPE = {
    "kind": "paper-icl", "name": "tiny", "seed": 0,
    "description": "Linear <script>alert(1)</script> & friends",
    "task": {"function": "linear", "n_dims": 3},
    "curriculum": {"dims": {"start": 2, "end": 3}, "points": {"start": 5, "end": 7, "inc": 2}, "interval": 5},
    "models": {"T": {"family": "gpt2", "hidden_size": 16, "num_hidden_layers": 2, "num_attention_heads": 2},
               "M": {"family": "mamba", "hidden_size": 16, "num_hidden_layers": 2, "state_size": 4}},
    "train": {"steps": 12, "batch_size": 8, "lr": 0.001},
    "eval": {"prompts": 32, "shifts": ["standard", "noisy", "x*2"]},
    "probe": {"prompts": 32, "fit_positions": 4},
}


def curve(n: int, start: float = 1.0) -> Curve:
    mean = [start / (k + 1) for k in range(n)]
    return Curve(list(range(n)), mean, [0.9 * m for m in mean], [1.1 * m for m in mean])


def report(tmp_path: Path, shipped: Path | None) -> str:
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(RECIPE))
    recipe = load_paper_recipe(path)
    points = recipe.eval_points
    results = {s: {n: curve(points, k + 1) for k, n in enumerate(["T", "M", "least squares"])}
               for s in recipe.shifts}
    info = {n: {"family": recipe.models[n]["family"], "layers": 2, "parameters": 12345} for n in recipe.models}
    training = {n: {"steps": 12, "wall_s": 3.0, "device": "cpu", "threads": 1, "final_loss": 0.5,
                    "loss_every": 1, "losses": [1.0, 0.8, 0.5]} for n in recipe.models}
    probed = ProbeResult({n: curve(3) for n in recipe.models}, {n: [(1.0, 0.0)] * 3 for n in recipe.models},
                         curve(4), 0.5)
    out = write_report(tmp_path / "report.html", recipe, info, training, results, probed, shipped_weights=shipped)
    return out.read_text(encoding="utf-8")


def test_the_report_is_the_report_packages_page_with_the_recipes_text_escaped(tmp_path):
    html = report(tmp_path, shipped=None)
    # The main report's template and stylesheet, and one section per part of the paper report.
    assert '<meta name="generator" content="mambapoc">' in html and ".masthead" in html and "--mamba:" in html
    ids = re.findall(r'<section id="([^"]+)">', html)
    assert ids == ["setup", "key-numbers", "error", "shifts", "probing", "training", "observations", "paper"]
    assert '<a href="#shifts">4. Under shifts</a>' in html
    # Text from the recipe is escaped once, by the writer.
    assert "<script>" not in html
    assert "Linear &lt;script&gt;alert(1)&lt;/script&gt; &amp; friends" in html
    assert "&amp;amp;" not in html and "&amp;lt;" not in html
    # Charts inline: error, one per shift (noisy, x*2), probe, training loss; nothing fetched from elsewhere.
    assert len(re.findall(r'<img src="data:image/png;base64,[A-Za-z0-9+/=]+"', html)) == 5
    assert "http" not in html
    # Tables: labels left, numbers right-aligned.
    assert '<th class="num">parameters</th>' in html and '<td class="num">12,345</td>' in html
    assert "<td>gpt2</td>" in html
    assert "shipped weights" not in html


def test_shipped_weights_training_figures_are_said_to_be_recorded_not_rerun(tmp_path):
    html = report(tmp_path, shipped=tmp_path / "paper_icl_small")
    assert html.count("not rerun here") == 3  # beside the models table, in its caption, and at the loss chart
    assert '<p class="muted">The models were not trained in this run: it evaluates the shipped weights in ' \
           "paper_icl_small" in html


def test_run_passes_the_weights_it_evaluated_and_none_when_it_trained(tmp_path, monkeypatch):
    import mambapoc.paper.run as run
    from mambapoc.paper.recipe import load_paper_recipe

    seen = []

    def fake_write_report(path, *args, shipped_weights=None):
        seen.append(shipped_weights)
        return write_atomic(path, "")

    monkeypatch.setattr(run, "write_report", fake_write_report)
    tiny = {**RECIPE, "train": {"steps": 2, "batch_size": 4, "lr": 0.001},
            "eval": {"prompts": 8, "shifts": ["standard"]}, "probe": {"prompts": 8, "fit_positions": 2}}
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for name, extra in (("trained", {}), ("shipped", {"weights": "trained/weights"}),
                            ("retrained", {"weights": "trained/weights", "retrain": True})):
            (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump({**tiny, **extra}))
            run.run_paper_recipe(load_paper_recipe(tmp_path / f"{name}.yaml"), tmp_path / name, resume=False)
    finally:
        torch.set_num_threads(before)
    assert seen == [None, tmp_path / "trained" / "weights", None]
