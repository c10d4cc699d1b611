"""Formats the user declares instead of detection: `--log-format` in the placeholder syntax of log-parsing
tools (Drain, LogPAI: `<Date> <Time> <Pid> <Level> <Component>: <Content>`) and `--log-regex` with named
groups (`ts`, `level`, `component`, `message`, any other kept as a field).

In a `--log-format`, `<Content>` (or `<Message>`) is the message; date and time placeholders (`<Date>`,
`<Time>`, `<Timestamp>`, `<Month>`, `<Day>`, `<Year>`, …) make the timestamp together; `<Level>` (or
`<Severity>`) the level; `<Component>` (or `<Logger>`, `<Program>`, `<Tag>`, …) the component; any other
placeholder an extra field named after it. A placeholder matches as little text as it can (`.*?`), without
the spaces around it; a run of spaces matches any whitespace; other text is literal, except that a
backslash escapes the next character and parentheses group (`(\\[<Pid>\\])?` is an optional part), as in
LogPAI's formats.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date

from mambapoc.errors import UserError
from mambapoc.ingest.formats import STACK_CONTINUATION, LineFormat, named
from mambapoc.ingest.timestamps import TimeParser

FORMAT = "declared"
# A declared format that matches fewer of a file's event lines than this is a mistake, not a format.
MIN_SHARE = 0.5
_TIME = re.compile(r"(?i)(?:date|time|timestamp|datetime|month|day|year|weekday|ampm|zone)\d*")
_ROLES = (
    (re.compile(r"(?i)content|message|msg"), "msg"),
    (re.compile(r"(?i)level|severity|loglevel|lvl"), "level"),
    (re.compile(r"(?i)component|logger|program|tag|module|class|source|service"), "component"),
)
_PLACEHOLDER = re.compile(r"<(\w+)>")


@dataclass(frozen=True)
class Declared:
    """What the user said a file looks like: one of a placeholder format and a regular expression."""

    log_format: str | None = None
    log_regex: str | None = None

    def __post_init__(self) -> None:
        # Checked before any work, so that a typo fails at once.
        if self.log_format and self.log_regex:
            raise UserError("give --log-format or --log-regex, not both")
        if self.log_format:
            compile_format(self.log_format)
        elif self.log_regex:
            compile_regex(self.log_regex)

    def __bool__(self) -> bool:
        return bool(self.log_format or self.log_regex)

    def option(self) -> dict:
        return {"log_format": self.log_format} if self.log_format else {"log_regex": self.log_regex}

    def describe(self) -> str:
        return self.log_format or f"regex: {self.log_regex}"


def _literal(text: str) -> str:
    out, i = [], 0
    while i < len(text):
        c = text[i]
        if c == "\\" and i + 1 < len(text):
            out.append(re.escape(text[i + 1]))
            i += 2
            continue
        if c.isspace():
            while i + 1 < len(text) and text[i + 1].isspace():
                i += 1
            out.append(r"\s+")
        elif c == "(":
            out.append("(?:")
        elif c == ")" or (c == "?" and out and out[-1] == ")"):
            out.append(c)
        else:
            out.append(re.escape(c))
        i += 1
    return "".join(out)


def _group(placeholder: str, time_parts: list[str], taken: set[str]) -> str:
    """The group a placeholder captures into: a role's, `_tN` for a part of the time, else its own name."""
    if _TIME.fullmatch(placeholder):
        time_parts.append(f"_t{len(time_parts)}")
        return time_parts[-1]
    role = next((role for pattern, role in _ROLES if pattern.fullmatch(placeholder)), None)
    name = role if role and role not in taken else placeholder.lower()
    if name in taken:
        raise UserError(f"--log-format: <{placeholder}> appears twice")
    taken.add(name)
    return name


def compile_format(spec: str) -> tuple[re.Pattern, list[str]]:
    """The regular expression of a `--log-format`, and the groups holding parts of the timestamp."""
    if not _PLACEHOLDER.search(spec):
        raise UserError(f"--log-format {spec!r} has no <Placeholder>; e.g. '<Date> <Time> <Level> <Content>'")
    parts, time_parts, taken = [], [], set()
    last = 0
    for m in _PLACEHOLDER.finditer(spec):
        parts.append(_literal(spec[last : m.start()]))
        group = _group(m[1], time_parts, taken)
        # Values do not begin or end with spaces: `| <Level> |` reads `INFO` out of `| INFO  |`.
        parts.append(r"\s*(?P<msg>.*)" if group == "msg" else rf"\s*(?P<{group}>.*?)\s*")
        last = m.end()
    parts.append(_literal(spec[last:]))
    if "msg" not in taken:
        parts.append(r"\s*(?P<msg>.*)")
    try:
        return re.compile("".join(parts) + "$"), time_parts
    except re.error as e:
        raise UserError(f"--log-format {spec!r}: {e} (escape a literal parenthesis as \\( )") from None


def compile_regex(spec: str) -> re.Pattern:
    """A `--log-regex`, its `message` group renamed `msg` (or the rest of the line after it)."""
    try:
        regex = re.compile(spec)
    except re.error as e:
        raise UserError(f"--log-regex {spec!r} is not a valid regular expression: {e}") from None
    if "message" in regex.groupindex:
        return re.compile(spec.replace("(?P<message>", "(?P<msg>"))
    if "msg" in regex.groupindex:
        return regex
    return re.compile(rf"(?:{spec})\s*(?P<msg>.*)")


def _timestamp(regex: re.Pattern, time_parts: list[str], matches: list[re.Match]):
    """Which consecutive time placeholders make a timestamp: the run that reads the most sample lines
    (LogPAI's BGL format has an epoch `<Timestamp>`, a `<Date>` and a full `<Time>`; Linux's `<Month>
    <Date> <Time>` reads only together)."""
    parse = TimeParser()
    runs = [
        time_parts[i : i + n] for n in range(len(time_parts), 0, -1) for i in range(len(time_parts) - n + 1)
    ]

    def text(m: re.Match, run: list[str]) -> str:
        return " ".join(m[g] for g in run if m[g])

    best, best_score = None, (0, 0)
    for run in runs:
        values = [v for m in matches if (v := parse(text(m, run)))]
        # The run that reads the most lines; of two that read as many, the one that says more (a date and
        # a time over a date alone).
        score = (len(values), sum(map(len, values)))
        if score > best_score:
            best, best_score = run, score
    if best is None:
        return lambda m, modified: None

    def timestamp(m: re.Match, modified: date) -> str | None:
        value = text(m, best)
        return parse(value, modified) if value else None

    return timestamp


def line_format(declared: Declared, lines: list[str], source: str) -> tuple[LineFormat, float]:
    """The declared format as a LineFormat for the file whose first lines are `lines`, and the share of
    their event lines it matches; under MIN_SHARE it is an error showing two lines that do not match."""
    if declared.log_format:
        regex, time_parts = compile_format(declared.log_format)
    else:
        regex, time_parts = compile_regex(declared.log_regex), []
    heads = [(no, ln) for no, ln in enumerate(lines, start=1) if ln.strip() and not STACK_CONTINUATION.match(ln)]
    matches = [m for _, ln in heads if (m := regex.match(ln))]
    share = round(len(matches) / len(heads), 2) if heads else 1.0
    if share < MIN_SHARE:
        failed = [(no, ln) for no, ln in heads if not regex.match(ln)][:2]
        shown = " and ".join(f"line {no}: {ln[:160]!r}" for no, ln in failed)
        what = "--log-format" if declared.log_format else "--log-regex"
        raise UserError(
            f"{source}: {what} matches {len(matches)} of {len(heads)} lines, under half; e.g. {shown}"
        )
    timestamp: Callable | None = _timestamp(regex, time_parts, matches) if time_parts else None
    return named(FORMAT, regex, timestamp=timestamp), share
