"""Recipes: one YAML file that names a whole run (ingest → compare → report).

Relative paths in a recipe are relative to the recipe file, so a recipe and its data can move together.
Every field is checked before anything runs, and an error names the field (`compare.lengths: ...`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

from mambapoc.bench.config import CompareConfig
from mambapoc.errors import UserError

SECTIONS = ("name", "description", "ingest", "compare", "report")
INGEST_KEYS = ("paths", "name", "format", "text_field", "label_field", "mask", "mask_regex")
REPORT_KEYS = ("formats", "lang")


@dataclass
class Recipe:
    path: Path
    name: str
    description: str = ""
    ingest: dict | None = None
    compare: CompareConfig = field(default_factory=CompareConfig)
    report_formats: list[str] = field(default_factory=lambda: ["html", "pdf", "md"])
    report_langs: list[str] = field(default_factory=lambda: ["en"])


def _as_list(value, where: str) -> list:
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    if isinstance(value, list):
        return value
    raise UserError(f"{where}: expected a list")


def load_recipe(path: Path) -> Recipe:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"recipe {path} does not exist")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise UserError(f"recipe {path} is not valid YAML{where}") from None
    if not isinstance(raw, dict):
        raise UserError(f"recipe {path}: expected a mapping with sections {', '.join(SECTIONS)}")
    for key in raw:
        if key not in SECTIONS:
            raise UserError(f"recipe {path}: unknown section {key!r} (known: {', '.join(SECTIONS)})")
    base = path.parent
    recipe = Recipe(path=path, name=str(raw.get("name") or path.stem), description=str(raw.get("description", "")))

    ingest = raw.get("ingest")
    if ingest is not None:
        if not isinstance(ingest, dict) or "paths" not in ingest:
            raise UserError(f"recipe {path}: ingest.paths is required (files or directories to ingest)")
        for key in ingest:
            if key not in INGEST_KEYS:
                raise UserError(f"recipe {path}: ingest.{key}: unknown setting (known: {', '.join(INGEST_KEYS)})")
        ingest = dict(ingest)
        ingest["paths"] = [base / p for p in _as_list(ingest["paths"], f"recipe {path}: ingest.paths")]
        ingest.setdefault("name", recipe.name)
        recipe.ingest = ingest

    compare = dict(raw.get("compare") or {})
    if ingest is not None:
        compare.setdefault("dataset", ingest["name"])
    if compare.get("pricing"):
        compare["pricing"] = str(base / compare["pricing"])
    recipe.compare = CompareConfig.from_dict(compare, where=f"recipe {path}: compare")

    report = raw.get("report") or {}
    for key in report:
        if key not in REPORT_KEYS:
            raise UserError(f"recipe {path}: report.{key}: unknown setting (known: {', '.join(REPORT_KEYS)})")
    if "formats" in report:
        recipe.report_formats = _as_list(report["formats"], f"recipe {path}: report.formats")
    if "lang" in report:
        recipe.report_langs = _as_list(report["lang"], f"recipe {path}: report.lang")
    return recipe
