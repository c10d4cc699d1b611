"""What a comparison will run: one planned cell per model run × length × task, in the order it runs."""

from __future__ import annotations

from dataclasses import dataclass, field

from mambapoc.bench.config import CompareConfig
from mambapoc.results import cell_id, model_key
from mambapoc.tasks.spec import TaskSpec


@dataclass(frozen=True)
class Planned:
    """One cell to measure: which model (and implementation), which task, at which length."""

    model: str
    impl: str
    cross_check: bool
    task: TaskSpec  # for a serving cell: the task whose prompt it serves
    length_tokens: int
    batch: int | str | None = None  # a serving cell's batch ("auto": the largest that fits); None: a task cell

    @property
    def key(self) -> str:
        return model_key(self.model, self.cross_check)

    @property
    def task_key(self) -> str:
        return self.task.key if self.batch is None else f"serving[batch={self.batch}]"

    @property
    def cell_id(self) -> str:
        return cell_id(self.key, self.task_key, self.length_tokens)


@dataclass
class Plan:
    """Every cell of the run, model by model, short lengths first; `done` holds the ids not to run again."""

    cells: list[Planned]
    done: set[str] = field(default_factory=set)



def model_runs(cfg: CompareConfig) -> list[tuple[str, str]]:
    """(spec, impl) pairs: a checkpoint with SSM layers (Mamba-1/2, hybrids) may run on our code (for a
    hybrid: transformers' model with its SSM mixers on our kernels), transformers' code alone (a
    cross-check, keyed `SPEC@hf`), or both; a Transformer runs on transformers."""
    runs = []
    for spec in cfg.models:
        impls = {"ours": ["ours"], "hf": ["hf"], "both": ["ours", "hf"]}[cfg.mamba_impl] if has_ssm(spec) else ["hf"]
        runs += [(spec, impl) for impl in impls]
    return runs


def has_ssm(spec: str) -> bool:
    """Whether a spec has SSM layers our code runs: Mamba-1, Falcon-Mamba, Mamba-2, or a hybrid."""
    from mambapoc.models.footprint import family_of
    from mambapoc.models.registry import read_config, resolve

    return family_of(read_config(resolve(spec))) != "transformer"


def plan(cfg: CompareConfig) -> Plan:
    cells = []
    for spec, impl in model_runs(cfg):
        cross_check = impl == "hf" and cfg.mamba_impl != "ours" and has_ssm(spec)
        for length in sorted(cfg.lengths):
            cells += [Planned(spec, impl, cross_check, task, length) for task in cfg.tasks]
            cells += [Planned(spec, impl, cross_check, cfg.tasks[0], length, b) for b in cfg.batch_sizes]
    return Plan(cells)
