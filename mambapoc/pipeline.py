"""The whole job as library calls: ingest → compare → report for a run recipe, or the paper reproduction
for a `kind: paper-icl` recipe. The command line only parses, calls these and prints what they return.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from mambapoc.errors import UserError


@dataclass(frozen=True)
class Outputs:
    """What a run wrote: its run directory, the dataset it ingested (if any), and its report files."""

    run_dir: Path
    reports: list[Path]
    dataset: Path | None = None
    cells: list = field(default_factory=list)

    @property
    def html(self) -> Path | None:
        return next((p for p in self.reports if p.suffix == ".html"), None)


def default_run_dir(name: str) -> Path:
    return Path("runs") / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"


def write_reports(run_dir: Path, formats: Sequence[str], langs: Sequence[str]) -> list[Path]:
    """Every asked format in every language; cells.csv, shared by the languages, is listed once."""
    from mambapoc.report import build

    paths: dict[Path, None] = {}
    for lang in langs:
        paths.update(dict.fromkeys(build(run_dir, formats=tuple(formats), lang=lang).values()))
    return list(paths)


def run_recipe(recipe, run_dir: Path, data_dir: Path | None = None, resume: bool = False,
               display=None) -> Outputs:
    """Ingest the recipe's sources (unless resuming), compare its models into `run_dir`, write its report.

    `data_dir` overrides the recipe's `compare.data_dir` for both the ingest and the compare step. A
    KeyboardInterrupt during compare propagates once every finished cell is on disk.
    """
    from mambapoc.bench.engine import check, resumed_config, run_compare

    cfg = recipe.compare
    if data_dir is not None:
        cfg.data_dir = str(data_dir)
    if resume:
        cfg = resumed_config(run_dir, cfg.to_dict())
    check(cfg)  # a model that cannot be found stops the run before its ingest writes anything
    dataset = None
    if recipe.ingest is not None and not resume:
        from mambapoc.ingest import ingest

        dataset = ingest(recipe.ingest.paths, data_dir=cfg.data_dir, progress=display is not None,
                         force=_own_dataset(recipe, cfg.data_dir), **recipe.ingest.options()).path
    cells = run_compare(cfg, run_dir, resume, display)
    return Outputs(run_dir, write_reports(run_dir, recipe.report_formats, recipe.report_langs), dataset, cells)


def _own_dataset(recipe, data_dir: str | None) -> bool:
    """Whether the recipe's dataset exists from these same sources: then the recipe may rebuild it when its
    options or the tool changed. A dataset of the same name from other sources is someone else's: ingest
    refuses to replace it and says so."""
    from mambapoc.ingest.dataset import MANIFEST, default_data_dir, read_manifest

    target = (Path(data_dir) if data_dir else default_data_dir()) / recipe.ingest.name
    if not (target / MANIFEST).is_file():
        return False
    try:
        inputs = read_manifest(target).get("inputs")
    except UserError:
        return False
    return inputs == [str(p) for p in recipe.ingest.paths]


def run_file(path: Path, out: Path | None = None, data_dir: Path | None = None, resume: bool = False,
             overrides: Sequence[str] = (), display=None, on_start=None) -> Outputs:
    """Run the recipe at `path`, whatever its kind. `on_start(run_dir)` is called once the run directory
    is known, before any work, so a caller can tell the user where an interrupted run can be resumed."""
    from mambapoc.paper.recipe import is_paper_recipe

    if is_paper_recipe(path):
        if data_dir is not None:
            raise UserError("--data-dir does not apply to paper-icl recipes (their data is generated)")
        from mambapoc.paper.recipe import load_paper_recipe
        from mambapoc.paper.run import run_paper_recipe

        paper = load_paper_recipe(path, overrides)
        run_dir = out or default_run_dir(paper.name)
        if on_start:
            on_start(run_dir)
        return Outputs(run_dir, [run_paper_recipe(paper, run_dir, resume)])
    from mambapoc.recipe import load_recipe

    recipe = load_recipe(path, overrides)
    run_dir = out or default_run_dir(recipe.name)
    if on_start:
        on_start(run_dir)
    return run_recipe(recipe, run_dir, data_dir, resume, display)
