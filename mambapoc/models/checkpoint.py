"""Reading checkpoint directories in the Hugging Face layout: config.json and the weight files.

Kept apart from the model code so that `mamba.py` depends on torch and the kernels alone.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING

from mambapoc.errors import UserError

if TYPE_CHECKING:
    import torch


def read_config(path: Path) -> dict:
    if not Path(path).is_dir():
        raise UserError(f"{path} is not a checkpoint directory (hub ids and bundled:NAME are resolved by "
                        "mambapoc.models.registry)")
    try:
        return json.loads((Path(path) / "config.json").read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise UserError(f"cannot read {path / 'config.json'}: {e}") from None


def read_weights(path: Path) -> dict[str, torch.Tensor]:
    """All tensors of a checkpoint directory: (sharded) safetensors, else (sharded) pytorch_model.bin
    read with weights_only=True, so a checkpoint can never run code."""
    import torch
    from safetensors.torch import load_file

    def load_bin(f: Path) -> dict[str, torch.Tensor]:
        return torch.load(f, map_location="cpu", weights_only=True)

    for single, index, loader in (("model.safetensors", "model.safetensors.index.json", load_file),
                                  ("pytorch_model.bin", "pytorch_model.bin.index.json", load_bin)):
        if (path / single).is_file():
            files = [path / single]
        elif (path / index).is_file():
            shards = sorted(set(json.loads((path / index).read_text())["weight_map"].values()))
            files = [path / s for s in shards]
            absent = [f.name for f in files if not f.is_file()]
            if absent:
                raise UserError(f"{path}: weight shard {absent[0]} listed in {index} is missing")
        else:
            continue
        weights: dict[str, torch.Tensor] = {}
        for f in files:
            try:
                weights.update(loader(str(f)))
            except Exception as e:  # noqa: BLE001 - safetensors and torch raise many types for a bad file
                first_line = str(e).splitlines()[0] if str(e) else ""
                raise UserError(f"{f}: cannot read weights ({type(e).__name__}: {first_line})") from None
        # mamba_ssm checkpoints call the embedding `embedding`; transformers renamed it `embeddings`.
        return {k.replace("backbone.embedding.", "backbone.embeddings."): v for k, v in weights.items()}
    raise UserError(f"{path}: no weights found (expected model.safetensors, a sharded "
                    "model.safetensors.index.json, or pytorch_model.bin)")


def parameter_count(path: Path) -> int | None:
    """Parameters in a directory's safetensors files, read from their headers alone (no tensor is loaded);
    None when it has none."""
    from safetensors import safe_open

    files = sorted(Path(path).glob("*.safetensors"))
    if not files:
        return None
    total = 0
    for f in files:
        with safe_open(str(f), framework="pt") as h:
            for key in h.keys():
                total += math.prod(h.get_slice(key).get_shape())
    return total
