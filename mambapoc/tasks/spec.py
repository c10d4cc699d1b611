"""How tasks and lengths are written by users: `needle`, `fewshot-classify[symbol_labels=true]`, `8k`.

Compare, training and the `tasks` commands all read task specs and lengths through this module, so a
spec means the same thing wherever it is typed (command line, recipe, saved config).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import yaml

from mambapoc.errors import UserError

_LENGTH = re.compile(r"^(\d+(?:\.\d+)?)([km]?)$")
_UNITS = {"": 1, "k": 1024, "m": 1024 * 1024}
_TASK = re.compile(r"([\w-]+)(?:\[(.*)\])?")
# A comma starts a new option only before `name=`, so list values work: needle[depths=0,50].
_OPTION_SPLIT = re.compile(r",(?=\s*[\w-]+=)")


def parse_length(value: str | int) -> int:
    """`1k` = 1024 tokens, `8k` = 8192, `64k` = 65536, `1m` = 1048576; a plain number counts tokens."""
    if isinstance(value, int) and not isinstance(value, bool):
        tokens = value
    else:
        m = _LENGTH.match(str(value).strip().lower())
        if not m:
            raise UserError(f"length {value!r} is not a token count such as 1024, 1k, 8k or 64k")
        exact = float(m[1]) * _UNITS[m[2]]
        if exact != int(exact):
            raise UserError(f"length {value!r} is not a whole number of tokens")
        tokens = int(exact)
    if tokens <= 0:
        raise UserError(f"length {value!r} must be at least one token")
    return tokens


def parse_lengths(value: str | int | list) -> list[int]:
    """`"1k,8k,64k"`, a single length, or a list of lengths -> [1024, 8192, 65536]."""
    if isinstance(value, str):
        parts = value.split(",")
    elif isinstance(value, (list, tuple)):
        parts = list(value)
    else:
        parts = [value]
    lengths = [parse_length(p) for p in parts if str(p).strip()]
    if not lengths:
        raise UserError(f"no lengths in {value!r}; give them like 1k,8k,64k")
    return lengths


@dataclass(frozen=True)
class TaskSpec:
    """A task family with its options; `key` names it in cell ids and reports."""

    name: str
    options: dict = field(default_factory=dict)

    @property
    def key(self) -> str:
        if not self.options:
            return self.name
        opts = ",".join(f"{k}={self.options[k]}" for k in sorted(self.options))
        return f"{self.name}[{opts}]"

    def to_dict(self) -> dict:
        return {"name": self.name, "options": dict(self.options)} if self.options else {"name": self.name}


def parse_task(item) -> TaskSpec:
    """`needle`, `fewshot-classify[noise_rate=0.3,symbol_labels=true]` or `{name:, options:}`."""
    if isinstance(item, TaskSpec):
        return item
    if isinstance(item, dict):
        if "name" not in item:
            raise UserError(f"task {item!r}: a task needs a name")
        options = item.get("options") or {}
        if not isinstance(options, dict):
            raise UserError(f"task {item['name']!r}: options must be a mapping of name: value")
        return TaskSpec(str(item["name"]), dict(options))
    text = str(item).strip()
    m = _TASK.fullmatch(text)
    if not m:
        raise UserError(f"cannot read task {text!r} (example: needle or fewshot-classify[noise_rate=0.3])")
    options = {}
    for part in filter(None, _OPTION_SPLIT.split(m.group(2) or "")):
        if "=" not in part:
            raise UserError(f"task {text!r}: option {part!r} needs a value (name=value)")
        k, v = part.split("=", 1)
        options[k.strip()] = yaml.safe_load(v.strip())
    return TaskSpec(m.group(1), options)


def parse_tasks(value) -> list[TaskSpec]:
    """A comma-separated string (commas inside brackets belong to options) or a list of specs."""
    items = _split_outside_brackets(value) if isinstance(value, str) else list(value)
    return [parse_task(x) for x in items]


def _split_outside_brackets(text: str) -> list[str]:
    parts, depth, cur = [], 0, ""
    for ch in text:
        depth += (ch == "[") - (ch == "]")
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    return [p.strip() for p in [*parts, cur] if p.strip()]
