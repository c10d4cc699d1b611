"""Shared fixtures: tiny models and a tiny dataset made locally (tests never touch the network)."""

from __future__ import annotations

import os
import random

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _log_lines(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    services = ["api", "auth", "billing", "search"]
    levels = ["INFO"] * 6 + ["WARN", "ERROR"]
    lines = []
    for i in range(n):
        svc = rng.choice(services)
        status = rng.choice([200, 200, 200, 404, 500, 502])
        rid = f"req-{rng.getrandbits(32):08x}"
        lines.append(
            f"2024-03-0{1 + i // 1000} 10:{(i // 60) % 60:02d}:{i % 60:02d},{i % 1000:03d} {rng.choice(levels)} "
            f"[worker-{i % 4}] com.example.{svc}.Handler: request {rid} user u{rng.randrange(50)} "
            f"ended with status {status} in {rng.randrange(5, 900)} ms"
        )
    return lines


@pytest.fixture(scope="session")
def tiny_tokenizer(tmp_path_factory):
    from mambapoc.train.tokenizer import train_tokenizer

    path = tmp_path_factory.mktemp("tok")
    tok = train_tokenizer(_log_lines(400), vocab_size=400)
    tok.save_pretrained(str(path))
    return path


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory, tiny_tokenizer):
    """A tiny random Mamba and a tiny random Llama, saved as HF checkpoint directories with the tokenizer."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM, MambaConfig, MambaForCausalLM

    tok = AutoTokenizer.from_pretrained(str(tiny_tokenizer))
    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("models")
    mamba = MambaForCausalLM(MambaConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, state_size=8))
    llama = LlamaForCausalLM(LlamaConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2,
                                         num_attention_heads=2, intermediate_size=64,
                                         max_position_embeddings=8192))
    dirs = {}
    for name, model in (("mamba", mamba), ("llama", llama)):
        d = root / name
        model.save_pretrained(str(d))
        tok.save_pretrained(str(d))
        dirs[name] = d
    return dirs


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory):
    """A dataset ingested from generated log4j-style lines: returns (data_dir, name)."""
    from mambapoc.ingest import ingest

    root = tmp_path_factory.mktemp("ds")
    src = root / "src"
    src.mkdir()
    (src / "app.log").write_text("\n".join(_log_lines(1500)) + "\n")
    data_dir = root / "data"
    ingest([src], name="tiny", data_dir=data_dir, progress=False)
    return data_dir, "tiny"


@pytest.fixture
def cli(capsys):
    """Runs the command line in this process: `cli("ingest", ...)` gives (exit code, stdout, stderr)."""
    from mambapoc.cli import main

    def run(*argv: str) -> tuple[int, str, str]:
        try:
            main(list(argv))
            code = 0
        except SystemExit as e:
            code = e.code or 0
        out = capsys.readouterr()
        return code, out.out, out.err

    return run
