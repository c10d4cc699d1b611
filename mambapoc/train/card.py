"""MODEL_CARD.md and mambapoc.json beside a trained checkpoint: what it is, how it was made, how it
scores, and what its numbers can and cannot say about full-size models."""

from __future__ import annotations

import json
from pathlib import Path

from mambapoc.fsutil import write_atomic


def _pct(x: float) -> str:
    return f"{100 * x:.1f} %"


def eval_table(evaluation: list[dict]) -> str:
    lines = ["| task | length (tokens) | × training length | accuracy | 95 % interval | chance | n |",
             "|---|---|---|---|---|---|---|"]
    for e in evaluation:
        if not e["n"]:
            lines.append(f"| {e['task']} | {e['length']} | {e['ratio']:g}× | — | not enough held-out records | — | 0 |")
            continue
        lo, hi = e["ci95"]
        lines.append(f"| {e['task']} | {e['length']} | {e['ratio']:g}× | {_pct(e['accuracy'])} | "
                     f"{_pct(lo)} – {_pct(hi)} | {_pct(e['chance'])} | {e['n']} |")
    return "\n".join(lines)


def write_card(out_dir: Path, *, name: str, family: str, params: int, arch: str, recipe_name: str,
               data: dict, training: dict, evaluation: list[dict], hardware: str) -> None:
    desc = (f"Tiny {family} model ({params / 1e6:.2f} M parameters) trained here on the bundled sample logs "
            f"by recipe {recipe_name}; a stand-in for real checkpoints, not a production model.")
    meta = {"description": desc, "family": family, "params": params, "trained_length": training["seq_len"],
            "architecture": arch, "data": data, "training": training, "evaluation": evaluation,
            "hardware": hardware}
    write_atomic(out_dir / "mambapoc.json", json.dumps(meta, indent=2))
    mix = ", ".join(f"{k} {v:g}" for k, v in data["mixture"].items())
    card = f"""# {name}

{desc}

| | |
|---|---|
| family | {family} ({arch}) |
| parameters | {params:,} |
| tokenizer | byte-level BPE, {data['vocab_size']:,} tokens, trained on the same sample corpus (`tokenizer.json`) |
| training data | {data['train_records']:,} records of the sample logs and documents; {data['heldout_records']:,} later records per source held out for evaluation |
| data mixture | {mix} (language modelling, few-shot classification with names and with symbol labels, needle retrieval, copying) |
| training length | {training['seq_len']} tokens |
| steps × batch | {training['steps']} × {training['batch_size']} ({training['tokens']:,} tokens) |
| final loss | {training['final_loss']:.3f} (mean of the last 50 steps) |
| wall time | {training['wall_s'] / 60:.1f} min on {hardware} |
| seed | {training['seed']} |

## Evaluation on held-out episodes

Episodes are built by the same task builders as `mambapoc compare`, from held-out records (the last
part of every source, never trained on). Accuracy with a 95 % Wilson interval; chance is the accuracy
of guessing uniformly among each instance's candidates (labels, or the needle's answer and its decoys).

{eval_table(evaluation)}

## What these numbers can and cannot tell

They show that the comparison pipeline measures real in-context behaviour: both models read the
context to answer. They say nothing about absolute quality on your data: full-size checkpoints have
~100× more parameters and were trained on ~10⁵× more text. Speed and memory trends with length
(constant Mamba state against a KV cache that grows with the context) carry over to full size;
accuracy levels do not.

Regenerate with `mambapoc train recipes/{recipe_name}.yaml`.
"""
    write_atomic(out_dir / "MODEL_CARD.md", card)
