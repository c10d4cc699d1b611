"""Reading YAML recipes: one set of rules and one error style for every kind of recipe.

A recipe is checked field by field before anything runs, and an error names the file and the field
(`recipe r.yaml: train.steps: expected an integer >= 1, got 0`). `--set a.b=VALUE` changes a field
before the check, VALUE read as YAML (`--set compare.lengths=[512,1k]`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import yaml

from mambapoc.errors import UserError

REQUIRED: Any = object()


def read_yaml(path: Path) -> dict:
    """The top-level mapping of a recipe file, or a one-line error saying why there is none."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"recipe {path} does not exist" if not path.exists() else f"recipe {path} is not a file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise UserError(f"recipe {path} is not a text file (a recipe is YAML)") from None
    except OSError as e:
        raise UserError(f"cannot read recipe {path}: {e.strerror}") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise UserError(f"recipe {path} is not valid YAML{where}") from None
    if not isinstance(raw, dict):
        raise UserError(f"recipe {path}: expected a mapping of sections (name:, compare:, ...)")
    return raw


def apply_overrides(raw: dict, overrides: Sequence[str]) -> dict:
    """`KEY.SUB=VALUE` items set (or add) fields of a raw recipe; the recipe's own check follows."""
    for item in overrides:
        key, sep, value = item.partition("=")
        parts = [p.strip() for p in key.split(".")]
        if not sep or not all(parts):
            raise UserError(f"--set {item!r}: expected KEY=VALUE, e.g. compare.lengths=[512,1k]")
        node = raw
        for i, part in enumerate(parts[:-1]):
            child = node.setdefault(part, {})
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise UserError(f"--set {key}: {'.'.join(parts[: i + 1])} is a value, not a section")
            node = child
        try:
            node[parts[-1]] = yaml.safe_load(value)
        except yaml.YAMLError:
            raise UserError(f"--set {item!r}: the value is not valid YAML") from None
    return raw


class Fields:
    """One mapping of a recipe, read field by field. `file` names the recipe in errors and `path` is where
    the mapping sits in it ("" at the top, "train" for the train section)."""

    def __init__(self, data: Any, allowed: Sequence[str], file: str, path: str = "", base: Path | None = None):
        self.file, self.path, self.base = file, path, base
        if not isinstance(data, dict):
            raise UserError(f"{self._where()}: expected a mapping with {', '.join(allowed)}")
        unknown = [k for k in data if k not in allowed]
        if unknown:
            what = "section" if not path else "setting"
            raise UserError(f"{self.name(unknown[0])}: unknown {what} (known: {', '.join(allowed)})")
        self.data = data

    @classmethod
    def of_file(cls, path: Path, allowed: Sequence[str], overrides: Sequence[str] = ()) -> Fields:
        """The top level of the recipe at `path`, relative paths taken from its folder."""
        raw = apply_overrides(read_yaml(path), overrides)
        return cls(raw, allowed, f"recipe {path}", base=Path(path).parent)

    def _where(self) -> str:
        return f"{self.file}: {self.path}" if self.path else self.file

    def name(self, key: str) -> str:
        return f"{self.file}: {self.path + '.' if self.path else ''}{key}"

    def error(self, key: str, message: str) -> UserError:
        return UserError(f"{self.name(key)}: {message}")

    def __contains__(self, key: str) -> bool:
        return self.data.get(key) is not None

    def section(self, key: str, allowed: Sequence[str], required: bool = False) -> Fields:
        value = self.data.get(key)
        if value is None:
            if required:
                raise self.error(key, f"this section is required ({', '.join(allowed)})")
            value = {}
        sub = f"{self.path}.{key}" if self.path else key
        return Fields(value, allowed, self.file, sub, self.base)

    def value(self, key: str, default: Any = REQUIRED) -> Any:
        value = self.data.get(key)
        if value is None:
            if default is REQUIRED:
                raise self.error(key, "is required")
            return default
        return value

    def integer(self, key: str, default: Any = REQUIRED, minimum: int | None = None,
                maximum: int | None = None) -> int:
        return self._number(key, default, int, minimum, maximum)

    def number(self, key: str, default: Any = REQUIRED, minimum: float | None = None,
               maximum: float | None = None) -> float:
        return self._number(key, default, float, minimum, maximum)

    def _number(self, key, default, kind, minimum, maximum):
        value = self.value(key, default)
        if value is None:
            return None
        whole = isinstance(value, int) or (isinstance(value, float) and value.is_integer() and kind is int)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and not whole):
            raise self.error(key, f"expected {'an integer' if kind is int else 'a number'}, got {value!r}")
        if value != value or (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
            bound = (f"between {minimum} and {maximum}" if minimum is not None and maximum is not None
                     else f">= {minimum}" if minimum is not None else f"<= {maximum}")
            raise self.error(key, f"expected a value {bound}, got {value}")
        return kind(value)

    def boolean(self, key: str, default: Any = REQUIRED) -> bool:
        value = self.value(key, default)
        if not isinstance(value, bool):
            raise self.error(key, f"expected true or false, got {value!r}")
        return value

    def choice(self, key: str, choices: Sequence[str], default: Any = REQUIRED) -> str:
        value = self.value(key, default)
        if value not in choices:
            raise self.error(key, f"expected one of {', '.join(map(str, choices))}, got {value!r}")
        return value

    def text(self, key: str, default: Any = REQUIRED) -> str:
        value = self.value(key, default)
        if value is None:
            return None
        if isinstance(value, (dict, list)):
            raise self.error(key, f"expected a single value, got {type(value).__name__}")
        return str(value)

    def strings(self, key: str, default: Any = REQUIRED) -> list[str]:
        """A list, or a comma-separated string."""
        value = self.value(key, default)
        if isinstance(value, str):
            return [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, list) or any(isinstance(v, (dict, list)) for v in value):
            raise self.error(key, f"expected a list, got {value!r}")
        return [str(v) for v in value]

    def paths(self, key: str, default: Any = REQUIRED) -> list[Path]:
        """Files or folders, relative to the recipe's folder."""
        return [self.base / p if self.base else Path(p) for p in self.strings(key, default)]

    def parsed(self, key: str, parse: Callable[[Any], Any], default: Any = REQUIRED) -> Any:
        """`parse(value)` for a field with its own syntax (lengths, task specs); its errors name the field."""
        value = self.value(key, default)
        try:
            return parse(value)
        except UserError as e:
            raise self.error(key, str(e)) from None
