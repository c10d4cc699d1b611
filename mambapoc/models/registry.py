"""Model specs → a loaded model and its tokenizer.

A spec is one of:
- `bundled:NAME`: a model shipped with the tool (`sample_data/models/NAME` in the repository), or
  `$MAMBAPOC_MODELS_DIR/NAME`;
- a local directory holding an HF checkpoint (config.json, weights, tokenizer);
- a Hugging Face hub id (`state-spaces/mamba-130m-hf`), taken from the local HF cache, downloaded only
  when the machine is online and `HF_HUB_OFFLINE` is not set.

Mamba-1, Falcon-Mamba and Mamba-2 checkpoints (transformers' or mamba_ssm's layout) run on our
implementation (`impl="ours"`) unless `impl="hf"` asks for transformers' own classes as a cross-check;
every other causal LM runs through transformers, with sdpa attention where it has attention and its own
KV or hybrid cache.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from mambapoc.errors import UserError
from mambapoc.models.adapters import HFCausal, LoadedModel, ModelInfo, OursMamba
from mambapoc.models.checkpoint import read_config
from mambapoc.models.footprint import family_of
from mambapoc.resources import models_dir

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def bundled_names() -> list[str]:
    d = models_dir()
    return sorted(p.name for p in d.iterdir() if (p / "config.json").is_file()) if d.is_dir() else []


def short_name(spec: str) -> str:
    if spec.startswith("bundled:"):
        return spec.split(":", 1)[1]
    return Path(spec.rstrip("/")).name or spec


def resolve(spec: str) -> Path:
    """The local directory of a spec, or a UserError that says how to provide it."""
    if spec.startswith("bundled:"):
        name = spec.split(":", 1)[1]
        path = models_dir() / name
        if not (path / "config.json").is_file():
            names = ", ".join(bundled_names()) or "none"
            raise UserError(f"no bundled model named {name!r} (bundled models: {names})")
        return path
    path = Path(spec).expanduser()
    if path.exists():
        if not path.is_dir():
            raise UserError(f"model path {spec} is a file; give the checkpoint directory")
        if not (path / "config.json").is_file():
            raise UserError(f"{spec} is not a model checkpoint: config.json is missing")
        return path
    if _HUB_ID.match(spec):
        return _from_hub(spec)
    raise UserError(f"model {spec!r} is neither bundled:NAME, an existing directory, nor a hub id like org/name")


def _from_hub(repo_id: str) -> Path:
    from huggingface_hub import snapshot_download

    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes")
    patterns = ["*.json", "*.safetensors", "*.model", "*.txt"]
    try:
        return Path(snapshot_download(repo_id, allow_patterns=patterns, local_files_only=offline))
    except Exception as e:  # noqa: BLE001 - any hub failure means the same thing to the user
        if not offline:
            try:
                return Path(snapshot_download(repo_id, allow_patterns=patterns, local_files_only=True))
            except Exception:  # noqa: BLE001
                pass
        raise UserError(
            f"model {repo_id} is not in the local Hugging Face cache and could not be downloaded "
            f"({type(e).__name__}); on a machine with access run `huggingface-cli download {repo_id} "
            f"--local-dir DIR`, copy DIR here and pass DIR as the model"
        ) from None


def quiet_transformers() -> None:
    """transformers' per-file progress bars would scroll through our own progress display."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()


def load_tokenizer(spec: str):
    from transformers import AutoTokenizer

    path = resolve(spec)
    if not any((path / f).is_file() for f in ("tokenizer.json", "tokenizer_config.json", "tokenizer.model")):
        raise UserError(f"{spec}: no tokenizer in {path} (expected tokenizer.json)")
    tok = AutoTokenizer.from_pretrained(str(path))
    if not tok.is_fast:
        raise UserError(f"{spec}: only fast (tokenizers-based) tokenizers are supported")
    return tok


def _card_summary(path: Path) -> tuple[int | None, str]:
    """Training length and a one-line description from a bundled model's MODEL_CARD.md, if any."""
    card = path / "MODEL_CARD.md"
    meta_file = path / "mambapoc.json"
    trained = None
    desc = ""
    if meta_file.is_file():
        meta = json.loads(meta_file.read_text())
        trained = meta.get("trained_length")
        desc = meta.get("description", "")
    if not desc and card.is_file():
        for line in card.read_text().splitlines():
            if line.strip() and not line.startswith("#"):
                desc = line.strip()
                break
    return trained, desc


def _mamba1():
    from mambapoc.models.mamba import MambaLM

    return MambaLM


def _mamba2():
    from mambapoc.models.mamba2 import Mamba2LM

    return Mamba2LM


# Families whose whole model is our own code (`impl="ours"`); a hybrid runs through transformers, with its
# SSM mixers on our kernels unless `impl="hf"`.
OURS = {"mamba": _mamba1, "mamba2": _mamba2}


def load(spec: str, device: str = "cpu", dtype: str = "float32", impl: str = "ours") -> LoadedModel:
    """Load a model spec for inference. `impl` matters only for checkpoints with SSM layers."""
    import torch

    quiet_transformers()
    path = resolve(spec)
    cfg = read_config(path)
    tokenizer = load_tokenizer(spec)
    torch_dtype = getattr(torch, dtype)
    dev = torch.device(device)
    family = family_of(cfg)
    trained, desc = _card_summary(path)
    if family in OURS and impl == "ours":
        model = OURS[family]().from_pretrained(str(path), device=dev, dtype=torch_dtype).eval()
        info = ModelInfo(spec, short_name(spec), family, "ours", model.num_parameters(), trained, desc)
        return OursMamba(info, model, tokenizer, dev, torch_dtype)

    from transformers import AutoModelForCausalLM

    kwargs = {"dtype": torch_dtype}
    if family in ("transformer", "hybrid"):
        kwargs["attn_implementation"] = "sdpa"  # only models with attention layers take one
    try:
        model = AutoModelForCausalLM.from_pretrained(str(path), **kwargs).to(dev).eval()
    except (ValueError, OSError, KeyError) as e:
        raise UserError(f"{spec}: transformers cannot load it as a causal LM: {str(e).splitlines()[0]}") from None
    params = sum(p.numel() for p in model.parameters())
    on_ours = impl == "ours" and family == "hybrid"  # its SSM mixers on our kernels (models/hf_kernels.py)
    info = ModelInfo(spec, short_name(spec), family, "ours" if on_ours else "hf", params, trained, desc)
    return HFCausal(info, model, tokenizer, dev, torch_dtype)


def model_footprint(spec: str, dtype: str = "float32"):
    """The serving footprint (`footprint.Footprint`) of a spec from its config.json, with its weights counted
    from the weight files when they are there."""
    import torch

    from mambapoc.models.checkpoint import parameter_count
    from mambapoc.models.footprint import footprint

    path = resolve(spec)
    elt = torch.empty((), dtype=getattr(torch, dtype)).element_size()
    params = parameter_count(path)
    return footprint(read_config(path), elt, params * elt if params is not None else None)
