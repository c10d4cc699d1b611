"""Training: a few steps on tiny configs lower the loss; checkpoints resume where they stopped."""

from __future__ import annotations

import random

import pytest
import torch
from transformers import AutoTokenizer

from mambapoc.train.data import IGNORE, SequenceMaker, split_records
from mambapoc.train.loop import TrainState, load_checkpoint, train_model
from mambapoc.train.models import build_model, count_params


@pytest.fixture(scope="module")
def maker(tiny_tokenizer, tiny_dataset):
    from mambapoc.ingest.dataset import load_records, resolve_dataset

    data_dir, name = tiny_dataset
    records = load_records(resolve_dataset(name, data_dir))
    tok = AutoTokenizer.from_pretrained(str(tiny_tokenizer))
    train, _ = split_records(records, 0.2)
    return SequenceMaker(train, tok, 256, {"lm": 0.4, "fewshot": 0.2, "needle": 0.2, "copy": 0.2}, 4.0, seed=0)


def test_batches_are_a_function_of_seed_and_step(maker):
    a = maker.batch(7, 4)
    b = maker.batch(7, 4)
    c = maker.batch(8, 4)
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    assert not torch.equal(a[0], c[0])
    ids, labels, weights = a
    assert ids.shape == labels.shape == weights.shape == (4, 256)
    # Padding is never a target.
    assert torch.all(weights[labels == IGNORE] == 0)


def test_split_holds_out_the_end_of_each_source():
    recs = [{"source": s, "id": i} for s in "ab" for i in range(10)]
    train, held = split_records(recs, 0.2)
    assert [r["id"] for r in held] == [8, 9, 8, 9]
    assert len(train) == 16


@pytest.mark.parametrize("family,settings", [
    ("mamba", {"hidden_size": 32, "num_hidden_layers": 2, "state_size": 8}),
    ("mamba2", {"hidden_size": 32, "num_hidden_layers": 2, "num_heads": 4, "head_dim": 16, "state_size": 8,
                "n_groups": 1, "chunk_size": 32}),
    ("llama", {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64}),
])
def test_a_few_steps_lower_the_loss_and_resume(maker, tmp_path, family, settings):
    model = build_model({"family": family, **settings}, len(maker.tok), maker.eos, seed=0)
    assert count_params(model) > 0
    ckpt = tmp_path / "m.ckpt"
    kw = dict(name=family, batch_size=4, lr=3e-3, warmup_steps=2, weight_decay=0.0, grad_clip=1.0,
              checkpoint=ckpt, checkpoint_every=5)
    state = train_model(model, maker, steps=30, **kw)
    first, last = sum(state.losses[:5]) / 5, sum(state.losses[-5:]) / 5
    assert last < first - 0.5, (first, last)
    # Asking for more steps resumes from the checkpoint instead of starting over.
    state2 = train_model(model, maker, steps=35, **kw)
    assert state2.step == 35 and state2.losses[:30] == state.losses


def test_worker_processes_train_on_the_same_batches(maker, tmp_path):
    spec = {"family": "llama", "hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2,
            "intermediate_size": 32}
    kw = dict(name="w", steps=4, batch_size=2, lr=1e-3, warmup_steps=1, weight_decay=0.0, grad_clip=1.0,
              checkpoint_every=100)
    inline = train_model(build_model(spec, len(maker.tok), maker.eos, seed=0), maker,
                         checkpoint=tmp_path / "a.ckpt", hardware="here", **kw)
    pooled = train_model(build_model(spec, len(maker.tok), maker.eos, seed=0), maker,
                         checkpoint=tmp_path / "b.ckpt", workers=2, hardware="here", **kw)
    assert pooled.losses == pytest.approx(inline.losses, rel=1e-5)
    # A run resumed on another machine names both.
    more = train_model(build_model(spec, len(maker.tok), maker.eos, seed=0), maker,
                       checkpoint=tmp_path / "b.ckpt", hardware="there", **{**kw, "steps": 5})
    assert more.hardware == "here + there"


def test_checkpoint_roundtrip(maker, tmp_path):
    from mambapoc.train.loop import save_checkpoint

    model = build_model({"family": "llama", "hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2,
                         "intermediate_size": 32}, len(maker.tok), maker.eos, seed=0)
    opt = torch.optim.AdamW(model.parameters())
    save_checkpoint(tmp_path / "c.ckpt", model, opt, TrainState(step=3, losses=[1.0, 2.0, 3.0]))
    other = build_model({"family": "llama", "hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2,
                         "intermediate_size": 32}, len(maker.tok), maker.eos, seed=random.randrange(100))
    st = load_checkpoint(tmp_path / "c.ckpt", other, torch.optim.AdamW(other.parameters()))
    assert st.step == 3
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), other.state_dict().values(), strict=True))


def test_fewshot_labels_already_shown_are_weighted_like_answers(maker):
    from types import SimpleNamespace

    prompt = "disk full\nLabel: zuko\n\nlogin ok\nLabel: dami\n\ndisk slow\nLabel: zuko\n\nlogin failed\nLabel:"
    ids = maker.tok.encode(prompt, add_special_tokens=False)
    inst = SimpleNamespace(prompt=prompt, prompt_ids=ids, meta={"classes": ["zuko", "dami"]})
    positions = maker._repeated_label_tokens(inst)
    # Only the second `zuko`: the first showing of a label cannot be known from the context.
    assert maker.tok.decode([ids[j] for j in positions]).strip() == "zuko"
    assert min(positions) >= len(maker.tok.encode(prompt[: prompt.index("disk slow")], add_special_tokens=False))
