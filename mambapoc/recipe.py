"""Recipes: one YAML file that names a whole run (ingest → compare → report).

Relative paths in a recipe are relative to the recipe file, so a recipe and its data can move together.
Every field is checked before anything runs, and an error names the field (`compare.lengths: ...`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from mambapoc.bench.config import CompareConfig
from mambapoc.errors import UserError
from mambapoc.ingest.declared import Declared
from mambapoc.ingest.detect import FORMATS as INGEST_FORMATS
from mambapoc.ingest.masking import opt_in_kinds
from mambapoc.report.files import FORMATS as REPORT_FORMATS
from mambapoc.report.i18n import LANGS
from mambapoc.schema import Fields

SECTIONS = ("name", "description", "ingest", "compare", "report")
INGEST_KEYS = ("paths", "name", "format", "text_field", "label_field", "mask", "mask_regex", "mask_extra",
               "log_format", "log_regex")
# An item of `ingest.paths` is a path, or a mapping that declares the format of the files under it.
PATH_KEYS = ("path", "log_format", "log_regex")
REPORT_KEYS = ("formats", "lang")


@dataclass
class Ingest:
    """What `mambapoc ingest` would be given: sources and the options of `mambapoc.ingest.ingest`."""

    paths: list[Path]
    name: str
    format: str = "auto"
    text_field: str | None = None
    label_field: str | None = None
    mask: bool = True
    mask_regex: list[str] = field(default_factory=list)
    mask_extra: list[str] = field(default_factory=list)
    log_format: str | None = None
    log_regex: str | None = None
    path_formats: dict[Path, Declared] = field(default_factory=dict)

    def options(self) -> dict:
        return {"name": self.name, "fmt": self.format, "text_field": self.text_field,
                "label_field": self.label_field, "mask": self.mask, "mask_regex": self.mask_regex,
                "mask_extra": self.mask_extra, "log_format": self.log_format, "log_regex": self.log_regex,
                "path_formats": self.path_formats}


@dataclass
class Recipe:
    path: Path
    name: str
    description: str = ""
    ingest: Ingest | None = None
    compare: CompareConfig = field(default_factory=CompareConfig)
    report_formats: list[str] = field(default_factory=lambda: ["html", "pdf", "md"])
    report_langs: list[str] = field(default_factory=lambda: ["en"])


def load_recipe(path: Path, overrides: Sequence[str] = ()) -> Recipe:
    path = Path(path)
    top = Fields.of_file(path, SECTIONS, overrides)
    name = top.text("name", path.stem)
    recipe = Recipe(path=path, name=name, description=top.text("description", ""))
    if "ingest" in top:
        sec = top.section("ingest", INGEST_KEYS)
        paths, path_formats = _ingest_paths(sec)
        declared = _declared(sec)
        recipe.ingest = Ingest(
            paths=paths,
            name=sec.text("name", name),
            format=sec.choice("format", ("auto", *INGEST_FORMATS), "auto"),
            text_field=sec.text("text_field", None),
            label_field=sec.text("label_field", None),
            mask=sec.boolean("mask", True),
            mask_regex=sec.strings("mask_regex", []),
            mask_extra=list(sec.parsed("mask_extra", opt_in_kinds, [])),
            log_format=declared.log_format,
            log_regex=declared.log_regex,
            path_formats=path_formats,
        )
    compare = dict(top.section("compare", CompareConfig.keys()).data)
    if recipe.ingest is not None:
        compare.setdefault("dataset", recipe.ingest.name)
    for key in ("pricing", "pricing_file", "data_dir"):
        if compare.get(key) is not None:
            compare[key] = str(path.parent / str(compare[key]))
    recipe.compare = CompareConfig.from_dict(compare, where=top.name("compare"))
    report = top.section("report", REPORT_KEYS)
    recipe.report_formats = _subset(report, "formats", REPORT_FORMATS, recipe.report_formats)
    recipe.report_langs = _subset(report, "lang", LANGS, recipe.report_langs)
    return recipe


def _ingest_paths(sec: Fields) -> tuple[list[Path], dict[Path, Declared]]:
    """`paths: [logs/a, {path: logs/b, log_format: '<Date> <Time> <Content>'}]`: the paths, and the format
    declared for those given as a mapping."""
    items = sec.value("paths")
    if not isinstance(items, list):
        return sec.paths("paths"), {}
    paths, declared = [], {}
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            paths.append(sec.base / str(item) if sec.base else Path(str(item)))
            continue
        entry = Fields(item, PATH_KEYS, sec.file, f"{sec.path}.paths[{i}]", sec.base)
        path = entry.paths("path")[0]
        paths.append(path)
        declared[path] = _declared(entry)
    return paths, declared


def _declared(sec: Fields) -> Declared:
    """The `log_format` or `log_regex` of a section, checked (an error names the field)."""
    log_format, log_regex = sec.text("log_format", None), sec.text("log_regex", None)
    try:
        return Declared(log_format, log_regex)
    except UserError as e:
        raise sec.error("log_format" if log_format else "log_regex", str(e)) from None


def _subset(sec: Fields, key: str, allowed: Sequence[str], default: list[str]) -> list[str]:
    values = sec.strings(key, default)
    bad = [v for v in values if v not in allowed]
    if bad or not values:
        raise sec.error(key, f"expected one or more of {', '.join(allowed)}, got {', '.join(bad) or 'none'}")
    return values
