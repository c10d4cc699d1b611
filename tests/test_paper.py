"""In-context learning reproduction: function samplers, baselines, models, training and probing, on
fixed seeds and tiny sizes."""

from __future__ import annotations

import math

import pytest
import torch

from mambapoc.paper.baselines import (
    Baseline,
    averaging,
    baselines_for,
    greedy_tree,
    lasso,
    least_squares,
    nearest_neighbours,
    relu_network,
)
from mambapoc.paper.functions import SHIFTS, TASKS, Task, sample_prompts
from mambapoc.paper.models import build_model, interleave, load_model, save_model
from mambapoc.paper.probe import fit_scale_shift, gradient_descent, probe
from mambapoc.paper.train import Curriculum, Schedule, batch_at, train_model


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    # Tiny models gain nothing from threads, and idle-spinning threads stall on a busy machine.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


TINY = {"gpt2": {"hidden_size": 16, "num_hidden_layers": 2, "num_attention_heads": 2},
        "mamba": {"hidden_size": 16, "num_hidden_layers": 2, "state_size": 4}}


def prompts(task: Task, n_points: int, batch: int, seed: int = 0, **kw):
    return sample_prompts(task, n_points, batch, torch.Generator().manual_seed(seed), **kw)


def normalised_error(pred, ys, task):
    return ((pred.double() - ys.double()).square() / task.error_scale).mean(0)


@pytest.mark.parametrize("name", TASKS)
def test_samplers_are_seeded_and_scaled(name):
    task = Task(name, 6)
    xs, ys = prompts(task, 20, 512)
    assert xs.shape == (512, 20, 6) and ys.shape == (512, 20)
    assert torch.equal(prompts(task, 20, 512)[1], ys)
    assert not torch.equal(prompts(task, 20, 512, seed=1)[1], ys)
    # Normalising by the error scale puts the zero predictor at about 1 in every class.
    assert ys.var().item() / task.error_scale == pytest.approx(1.0, rel=0.2)


def test_curriculum_zeroes_inactive_dims_and_keeps_functions_alive():
    for name in TASKS:
        xs, ys = prompts(Task(name, 8), 10, 64, active_dims=3)
        assert torch.all(xs[..., 3:] == 0) and torch.all(xs[..., :3] != 0)
        assert ys.abs().sum(1).min() > 0 or name == "tree"  # a tree may be constant on a few points


def test_sparse_functions_use_s_coordinates():
    task = Task("sparse", 8, sparsity=3)
    xs, ys = prompts(task, 40, 32)
    w = torch.linalg.lstsq(xs.double(), ys.double()[..., None]).solution[..., 0]
    assert torch.all((w.abs() > 1e-6).sum(1) <= 3)


def test_trees_take_at_most_two_to_the_depth_values():
    task = Task("tree", 5, depth=2)
    _, ys = prompts(task, 200, 16)
    assert max(len(torch.unique(row)) for row in ys) <= 4


def test_skewed_inputs_have_inverse_square_spectrum():
    task = Task("linear", 4, inputs="skewed")
    # One prompt, many points: its own covariance, eigenvalues proportional to 1, 1/4, 1/9, 1/16.
    xs, _ = prompts(task, 40000, 1)
    eig = torch.linalg.eigvalsh(torch.cov(xs[0].T.double())).flip(0)
    assert (eig / eig[0]).tolist() == pytest.approx([1, 1 / 4, 1 / 9, 1 / 16], rel=0.1, abs=0.01)
    assert eig.sum().item() == pytest.approx(4, rel=0.05)


def test_shifts_scale_and_perturb():
    task = Task("linear", 5)
    xs, ys = prompts(task, 10, 8)
    xs2, ys2 = prompts(task, 10, 8, shift=SHIFTS["x*2"])
    assert torch.allclose(xs2, 2 * xs) and torch.allclose(ys2, 2 * ys)
    _, ys3 = prompts(task, 10, 8, shift=SHIFTS["y*0.5"])
    assert torch.allclose(ys3, 0.5 * ys)
    _, clean = prompts(task, 100, 64)
    _, noisy = prompts(task, 100, 64, shift=SHIFTS["noisy"])  # the same functions, plus N(0, 1) noise
    assert (noisy - clean).std().item() == pytest.approx(1.0, rel=0.05)


def test_least_squares_is_exact_from_d_examples_on_noiseless_linear_functions():
    task = Task("linear", 5)
    xs, ys = prompts(task, 12, 256)
    err = normalised_error(Baseline("ls", least_squares)(xs, ys, list(range(12))), ys, task)
    assert err[0] > 0.5  # predicts 0 with nothing to learn from
    assert torch.all(err[5:] < 1e-8)
    assert err[2] > 0.3  # fewer examples than dimensions: underdetermined


@pytest.mark.parametrize("name", TASKS)
def test_every_baseline_predicts_zero_first_and_one_learns_each_class(name):
    task = Task(name, 3, hidden_units=16)
    xs, ys = prompts(task, 24, 64)
    errors = {}
    for b in baselines_for(task):
        pred = b(xs, ys, [0, 23])
        assert torch.all(pred[:, 0] == 0), b.name
        errors[b.name] = normalised_error(pred[:, 1], ys[:, 23], task).item()
    assert min(errors.values()) < 0.8, errors


def test_nearest_neighbours_and_averaging_follow_their_definitions():
    xs = torch.tensor([[[0.0], [10.0], [1.0], [9.0], [0.5]]])
    ys = torch.tensor([[1.0, 5.0, 2.0, 6.0, 0.0]])
    # Query 0.5: its 3 nearest among 0, 10, 1, 9 are 0, 1 and 9.
    assert nearest_neighbours(xs[:, :4], ys[:, :4], xs[:, 4]).item() == pytest.approx(3.0)
    assert averaging(xs[:, :4], ys[:, :4], xs[:, 4]).item() == pytest.approx(0.5 * (0 + 50 + 2 + 54) / 4)


def test_lasso_beats_least_squares_on_sparse_functions_with_few_examples():
    task = Task("sparse", 10, sparsity=2)
    xs, ys = prompts(task, 8, 128)
    ls = normalised_error(least_squares(xs[:, :7], ys[:, :7], xs[:, 7]), ys[:, 7], task)
    la = normalised_error(lasso(xs[:, :7], ys[:, :7], xs[:, 7]), ys[:, 7], task)
    assert la < 0.5 * ls


def test_greedy_tree_fits_a_threshold_function_exactly():
    g = torch.Generator().manual_seed(0)
    xs = torch.randn(4, 50, 3, generator=g)
    ys = torch.where(xs[..., 1] > 0.2, 1.0, -1.0)
    pred = greedy_tree(xs[:, :49], ys[:, :49], xs[:, 49], max_depth=1)
    assert torch.allclose(pred.float(), ys[:, 49])


def test_relu_network_fits_its_examples():
    task = Task("relu2nn", 3, hidden_units=8)
    xs, ys = prompts(task, 20, 8)
    trained = relu_network(xs, ys, xs[:, 0], hidden=32, steps=300, lr=1e-2)
    assert normalised_error(trained, ys[:, 0], task) < 0.2


def test_interleave_puts_each_label_after_its_input():
    xs = torch.arange(6.0).reshape(1, 2, 3)
    ys = torch.tensor([[7.0, 8.0]])
    tokens = interleave(xs, ys)
    assert tokens.shape == (1, 4, 3)
    assert tokens[0, 0].tolist() == xs[0, 0].tolist() and tokens[0, 1].tolist() == [7.0, 0.0, 0.0]
    assert tokens[0, 2].tolist() == xs[0, 1].tolist() and tokens[0, 3].tolist() == [8.0, 0.0, 0.0]


@pytest.mark.parametrize("family", ["gpt2", "mamba"])
def test_models_are_causal_position_free_and_round_trip(family, tmp_path):
    task = Task("linear", 4)
    model = build_model(family, 4, TINY[family], seed=0).eval()
    assert not any("wpe" in k or "wte" in k or "embeddings" in k for k in model.state_dict())
    xs, ys = prompts(task, 50, 3)  # longer than any training prompt
    with torch.no_grad():
        pred = model(xs, ys)
        xs2, ys2 = xs.clone(), ys.clone()
        xs2[:, 30:] += 1
        ys2[:, 29:] -= 1  # y_29 comes after x_29: it may change only later predictions
        pred2 = model(xs2, ys2)
        layers = model.layer_predictions(xs, ys)
    assert pred.shape == (3, 50)
    assert torch.allclose(pred[:, :30], pred2[:, :30], atol=1e-5) and not torch.allclose(pred[:, 30:], pred2[:, 30:])
    assert layers.shape == (3, 3, 50) and torch.allclose(layers[-1], pred, atol=1e-5)
    save_model(model, tmp_path / "m")
    with torch.no_grad():
        assert torch.allclose(load_model(tmp_path / "m")(xs, ys), pred)


def test_curriculum_grows_to_its_end():
    c = Curriculum((2, 5, 1), (5, 11, 2), 100)
    assert [c.at(s) for s in (0, 99, 100, 250, 10_000)] == [(2, 5), (2, 5), (3, 7), (4, 9), (5, 11)]
    assert c.ends_at == 300 and c.at(c.ends_at) == (5, 11) and c.at(c.ends_at - 1) != (5, 11)
    xs, ys = batch_at(Task("linear", 5), c, seed=3, step=150, batch_size=4)
    assert xs.shape == (4, 7, 5) and torch.all(xs[..., 3:] == 0)
    assert torch.equal(batch_at(Task("linear", 5), c, seed=3, step=150, batch_size=4)[1], ys)


@pytest.mark.parametrize("family", ["gpt2", "mamba"])
def test_a_few_steps_lower_the_loss_and_resume(family, tmp_path):
    # ReLU-network functions have a per-function mean that the context reveals: learnable in a few steps.
    task = Task("relu2nn", 2, hidden_units=8)
    curriculum = Curriculum((2, 2, 1), (9, 9, 1), 1)
    schedule = Schedule(steps=150, batch_size=32, lr=1e-2, warmup_steps=10, weight_decay=0.0, grad_clip=1.0,
                        checkpoint_every=50)
    model = build_model(family, 2, TINY[family], seed=0)
    kw = dict(seed=0, checkpoint=tmp_path / "m.ckpt", name=family, device=torch.device("cpu"))
    state = train_model(model, task, curriculum, schedule, **kw)
    first, last = sum(state.losses[:10]) / 10, sum(state.losses[-20:]) / 20
    assert last < 0.85 * first, (first, last)
    # Asking for more steps resumes from the checkpoint instead of starting over.
    longer = Schedule(**{**schedule.__dict__, "steps": 155})
    resumed = train_model(model, task, curriculum, longer, **kw)
    assert len(resumed.losses) == 155 and resumed.losses[:150] == state.losses


def test_probe_fit_recovers_a_known_scale_and_shift():
    g = torch.Generator().manual_seed(0)
    pred = torch.randn(500, generator=g)
    a, b = fit_scale_shift(pred, 2.5 * pred - 0.7 + 1e-3 * torch.randn(500, generator=g))
    assert a == pytest.approx(2.5, abs=1e-3) and b == pytest.approx(-0.7, abs=1e-3)


def test_gradient_descent_starts_at_zero_and_converges_to_least_squares():
    task = Task("linear", 3)
    xs, ys = prompts(task, 10, 64)
    preds = gradient_descent(xs, ys, steps=2000, step_size=1.0)
    assert preds.shape == (2001, 64, 10) and torch.all(preds[0] == 0)
    err = (preds - ys.double()).square().mean(1) / task.error_scale  # (steps + 1, positions)
    assert err[-1, 5:].max() < 1e-9 and err[1, 5:].min() > 0.01


def test_probe_of_an_untrained_model_runs_per_layer():
    task = Task("linear", 3)
    models = {"m": build_model("mamba", 3, TINY["mamba"], seed=0).eval(),
              "t": build_model("gpt2", 3, TINY["gpt2"], seed=0).eval()}
    result = probe(models, task, n_points=7, prompts=64, fit_positions=5, batch_size=32, seed=0,
                   device=torch.device("cpu"))
    assert result.layers["m"].x == [0, 1, 2] and len(result.scale_shift["t"]) == 3
    assert result.gradient_descent.x == [0, 1, 2]
    assert result.gradient_descent.mean[2] < result.gradient_descent.mean[0]
    assert all(math.isfinite(v) for c in result.layers.values() for v in c.mean)
