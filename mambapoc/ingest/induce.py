"""Header induction: the layout of a log that no known format describes, learned from a sample of its lines.

Column-wise type inference over the head of each line. From the left, each step finds the most specific
kind of column that at least COVERAGE of the lines still in play agree on at that point: a timestamp (any
form of timestamps.FORMS, bracketed or not), a level (bare, `[INFO ]`, `<W>`, `ERROR:`), a `component:`, a
bracketed group, a separator (`-`, `|`), a number, a dotted name, a token with a digit (hosts, nodes), a
word; and what follows it (one space, padding, a pipe). The header ends after the last column only a header
has (a timestamp, a level, a `component:`) and the brackets, separators and padded or piped columns right
after it, with at most MAX_GAP other columns between two of those; what follows is the message. The
layout becomes a regular expression that parses the whole file like a built-in format and reads as a
`--log-format` (`<Date> <Time> <Pid> <Level> <Component>: <Content>`); its confidence is the share of the
sample's event lines it parses. Nothing consistent (prose, a list of names) gives no layout.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date

from mambapoc.ingest.fields import LEVEL_LETTERS, LEVEL_WORDS, MONTHS
from mambapoc.ingest.formats import STACK_CONTINUATION, Fields, LineFormat
from mambapoc.ingest.timestamps import FORMS, TimeForm, groups, to_iso

FORMAT = "induced"
SAMPLE = 2000
MAX_COLUMNS = 12
COVERAGE = 0.8
MIN_CONFIDENCE = 0.6
# Columns of no telling kind (numbers, words, hosts) allowed before the first anchor and between two.
MAX_LEAD = 6
MAX_GAP = 3
# A column whose value is this common is a constant (`RAS`), which a message rarely starts with.
CONSTANT = 0.95

_SEP = r"(?:[ \t]*\|[ \t]*|[ \t]*,?[ \t]+|(?<=[\]>])(?=[^\s,|])|$)"
_LV = "(?:(?i:" + "|".join(LEVEL_WORDS) + f")|[{LEVEL_LETTERS}])"
_BRACKET = r"(?:[^\[\]]|\[[^\[\]]*\])*"
_SEP_TOKEN = r"-+|:+|>+|#+|\*+|=+|~+|\.\.\."
# A token that some lines have before a separator (`chrome.exe *64 - …` beside `chrome.exe - …`).
_NOT_SEP = rf"(?!(?:{_SEP_TOKEN})(?:\s|$))[^\s\[\]|][^\s|]*"
_TOKEN = r"[^\s|]+"
_TESTS = (
    (
        "level",
        rf"\[\s*(?P<_lb>{_LV})\s*\]|<(?P<_la>{_LV})>|\((?P<_lp>{_LV})\)|(?P<_lc>{_LV}):|(?P<_l>{_LV})",
    ),
    ("component", r"[^\s\[\]:|][^\s:|]*?(?:\[\d+\])? *:"),
    ("bracket", rf"\[(?P<_b>{_BRACKET})\]|<(?P<_a>[^<>\s]+)>"),
    # glog's `file.go:42]`, the end of a header whose opening bracket is its first character.
    ("closer", r"[^\s\[\]|:]+(?::\d+)?\]"),
    ("sep", _SEP_TOKEN),
    ("int", r"#?\d+"),
    ("dotted", r"[A-Za-z_$][\w$-]*(?:\.[\w$-]+)+"),
    ("id", r"(?=[^\s|]*\d)[^\s\[\]|][^\s|]*"),
    ("word", r"[^\s\[\]|][^\s|]*"),
)
_KINDS = [(kind, re.compile(rf"(?P<_c>{test})(?P<_s>{_SEP})")) for kind, test in _TESTS]
_FLAG_THEN_SEP = re.compile(rf"(?P<_c>{_NOT_SEP})(?P<_s>[ \t]+)(?:{_SEP_TOKEN}){_SEP}")
_ANY_TIME = re.compile(
    r"(?P<_open>\[)?(?:"
    + "|".join(f"(?P<_f{j}>{form.regex(f'f{j}_')})" for j, form in enumerate(FORMS))
    + rf")(?(_open)(?:\s[^\]]*)?\])(?P<_s>{_SEP})"
)
_TIME_ALONE = [
    (re.compile(rf"{form.regex()}(?P<_s>{_SEP})"), re.compile(rf"\[{form.regex()}(?:\s[^\]]*)?\](?P<_s>{_SEP})"))
    for form in FORMS
]
_DOTTED_NAME = r"[A-Za-z_$][\w$]*(?:\.[\w$]+)+"
_DOTTED = re.compile(rf"\s*({_DOTTED_NAME})\s*$")
_NAME_BACKWARDS = re.compile(r"[\w$.]*[A-Za-z_$]")


def _class_at_line(text: str) -> str | None:
    """`QuorumPeer[myid=1]/0:0:0:0:2181:FastLeaderElection@774` → `FastLeaderElection`. Read backwards
    from the `@`, so that the time stays linear in the length however long the text."""
    head, at, line = text.rstrip().rpartition("@")
    if not at or not line.isdigit():
        return None
    m = _NAME_BACKWARDS.match(head[::-1])
    return m[0][::-1] if m else None


def _dotted_whole(text: str) -> str | None:
    """`o.e.n.Node        ` → `o.e.n.Node`."""
    m = _DOTTED.match(text)
    return m[1] if m else None

_TAIL = re.compile(rf"\s\({_DOTTED_NAME}\)$")
_LABEL = re.compile(r"([A-Za-z]+)[ =:]")


@dataclass
class Column:
    """One column of a header: its kind, its regular expression (`{g}` opens its capturing group), how it
    reads as a placeholder, and what the sample showed of it."""

    kind: str
    pattern: str
    placeholder: str
    separator: str = " "  # the usual text after it: " ", "padded", "|", "\t", ","
    constant: bool = False
    form: TimeForm | None = None
    # A bracket holding the component (`[main:QuorumPeerMain@127]`, `[o.e.n.Node   ]`): how to cut it out.
    component_in: Callable[[str], str | None] | None = None
    role: str = "field"  # ts, level, component, field, or none (kept out of the record)
    name: str = ""
    # What the values call themselves (`[client 10.0.0.7]`, `[pid 4412]`): the field's name if any.
    label: str = ""
    # Some lines lack it (a `[client …]` only where there is a client): the header matches without it.
    optional: bool = False

    def regex(self, name: str | None = None) -> str:
        """The column's expression, its group named `name` (a prefix for a timestamp's parts)."""
        name = self.name if name is None else name
        if self.kind == "time":
            return self.pattern.replace("{g}", name)
        return self.pattern.replace("{g}", f"(?P<{name}>" if name and self.role != "none" else "(?:")


@dataclass
class Layout:
    """A learned header: its columns, which the message follows, and the share of sample lines it parses."""

    columns: list[Column]
    # The component closes the line instead (`msg (kafka.server.KafkaServer)`).
    tail: bool = False
    confidence: float = 0.0
    regex: re.Pattern = field(init=False)

    def __post_init__(self) -> None:
        message = rf"(?P<msg>.*?)(?:\s+\((?P<component>{_DOTTED_NAME})\))?$" if self.tail else "(?P<msg>.*)"
        parts = (f"(?:{c.regex()}{_SEP})?" if c.optional else c.regex() + _SEP for c in self.columns)
        self.regex = re.compile("".join(parts) + message)

    def describe(self) -> str:
        """The layout in the placeholder syntax of `--log-format` (each placeholder named once)."""
        seps = {"padded": "  ", "|": r"\|", ",": ", "}
        seen: Counter = Counter()

        def unique(m: re.Match) -> str:
            seen[m[1]] += 1
            return f"<{m[1]}{seen[m[1]] if seen[m[1]] > 1 else ''}>"

        parts = (c.placeholder + seps.get(c.separator, " ") for c in self.columns)
        text = "".join(f"({p})?" if c.optional else p for c, p in zip(self.columns, parts, strict=True))
        text += "<Content>"
        if self.tail:
            text += r" \(<Component>\)"
        return re.sub(r"<(\w+)>", unique, text)

    def line_format(self) -> LineFormat:
        return LineFormat(
            FORMAT,
            self.regex,
            _fields_of(self.columns, self.tail),
            joins_unmatched=False,
            continuation=STACK_CONTINUATION,
            extras=tuple(g for g in self.regex.groupindex if g not in ("level", "component", "msg") and g[0] != "_"
                         and not g.startswith("t_")),
        )


def _fields_of(columns: list[Column], tail: bool):
    ts = next((c for c in columns if c.role == "ts"), None)
    has_level = any(c.role == "level" for c in columns)
    component = next((c for c in columns if c.role == "component"), None)
    has_component = tail or component is not None
    parts = [(g, f"t_{g}") for g in re.findall(r"\(\?P<t_(\w+)>", ts.regex())] if ts else []
    letter = not has_level and any(g == "L" for g, _ in parts)

    def fields(m: re.Match, modified: date) -> Fields:
        when = to_iso({g: m[k] for g, k in parts if m[k]}, modified) if ts else None
        level = m["level"] if has_level else (m["t_L"] if letter else None)
        comp = m["component"] if has_component else None
        if comp and component is not None and component.component_in is not None:
            comp = component.component_in(comp)
        return when, level, comp

    return fields


def _separator(seps: list[str]) -> str:
    kinds = Counter(
        "|" if "|" in s else "\t" if "\t" in s else "padded" if s.startswith("  ") else "," if "," in s else " "
        for s in seps
    )
    return kinds.most_common(1)[0][0]


def _valid_form(line: str, pos: int) -> int | None:
    """The first form of the table that reads a valid date at `pos` (one regex for all, then each form
    alone when the first that matched reads a month 13: `13/02/2024` is d/M, not M/d)."""
    m = _ANY_TIME.match(line, pos)
    if m is None:
        return None
    j = next(j for j in range(len(FORMS)) if m[f"_f{j}"] is not None)
    if to_iso(groups(m, f"f{j}_")) is not None:
        return j
    for k in range(j + 1, len(FORMS)):
        for regex in _TIME_ALONE[k]:
            alone = regex.match(line, pos)
            if alone and to_iso(alone.groupdict()) is not None:
                return k
    return None


def _time_column(heads: list[str], pos: list[int], active: list[int]) -> Column | None:
    """The timestamp form most lines agree on at this point, if enough do."""
    seen = Counter(j for i in active if (j := _valid_form(heads[i], pos[i])) is not None)
    best, best_hits, bracketed = None, [], False
    for j, _ in seen.most_common(4):
        for wrapped in (False, True):
            hits = [
                m for i in active
                if (m := _TIME_ALONE[j][wrapped].match(heads[i], pos[i])) and to_iso(m.groupdict()) is not None
            ]
            if len(hits) > len(best_hits):
                best, best_hits, bracketed = j, hits, wrapped
    if best is None or len(best_hits) < COVERAGE * len(active):
        return None
    form = FORMS[best]
    texts = Counter(m[0][: m.start("_s") - m.start()].strip("[] ") for m in best_hits)
    holder = _time_placeholders(texts.most_common(1)[0][0])
    return Column(
        "time",
        rf"\[{form.regex('{g}')}(?:\s[^\]]*)?\]" if bracketed else form.regex("{g}"),
        rf"\[{holder}\]" if bracketed else holder,
        separator=_separator([m["_s"] for m in best_hits]),
        form=form,
    )


def _time_placeholders(text: str) -> str:
    """`<Timestamp>` for one token; else a placeholder per token by its shape (`<Month> <Day> <Time>`)."""
    tokens = [t.rstrip(",") for t in text.split()]
    if len(tokens) == 1:
        return "<Timestamp>"
    names = []
    for t in tokens:
        if ":" in t:
            names.append("Time")
        elif t.upper() in ("AM", "PM"):
            names.append("Ampm")
        elif t in ("Z", "UTC", "GMT") or t[0] in "+-":
            names.append("Zone")
        elif t.isdigit():
            names.append("Year" if len(t) == 4 else "Day")
        elif t[:3].title() in MONTHS:
            names.append("Month")
        elif t.isalpha():
            names.append("Weekday")
        else:
            names.append("Date")
    return " ".join(f"<{n}>" for n in names)


_LEVEL_WRAPPERS = {
    "_lb": (r"\[\s*{g}[A-Za-z]+\d?)\s*\]", r"\[<Level>\]"),
    "_la": (r"<{g}[A-Za-z]+\d?)>", "<<Level>>"),
    "_lp": (r"\({g}[A-Za-z]+\d?)\)", r"\(<Level>\)"),
    "_lc": (r"{g}[A-Za-z]+\d?):", "<Level>:"),
    "_l": (r"{g}[A-Za-z]+\d?)", "<Level>"),
}


def _bracket_column(hits: list[re.Match]) -> Column:
    if sum(m["_a"] is not None for m in hits) > len(hits) / 2:
        return Column("bracket", r"<{g}[^<>\s]+)>", "<<Thread>>")
    contents = [m["_b"] for m in hits if m["_b"] is not None]
    column = Column("bracket", rf"\[{{g}}{_BRACKET})\]", r"\[<Thread>\]")
    words = Counter(w[1].lower() for c in contents if (w := _LABEL.match(c)))
    if words and words.most_common(1)[0][1] >= COVERAGE * len(hits):
        column.label = words.most_common(1)[0][0]
    for extract in (_class_at_line, _dotted_whole):
        if sum(extract(c) is not None for c in contents) >= COVERAGE * len(hits):
            column.component_in, column.placeholder = extract, r"\[<Component>\]"
            break
    return column


def _column(kind: str, hits: list[re.Match], n: int) -> Column:
    top, top_count = Counter(m["_c"] for m in hits).most_common(1)[0]
    constant = top_count >= CONSTANT * n
    if kind == "level":
        wrapper = Counter(next(w for w in _LEVEL_WRAPPERS if m[w] is not None) for m in hits).most_common(1)[0][0]
        column = Column(kind, *_LEVEL_WRAPPERS[wrapper])
    elif kind == "component":
        with_pid = any(m["_c"].rstrip(" :").endswith("]") for m in hits)
        holder = r"<Component>(\[<Pid>\])?:" if with_pid else "<Component>:"
        column = Column(kind, r"{g}[^\s\[\]:|][^\s:|]*?)(?:\[(?P<cpid>\d+)\])? *:", holder)
    elif kind == "bracket":
        column = _bracket_column(hits)
    elif kind == "closer":
        column = Column(kind, r"{g}[^\s\[\]|:]+)(?::\d+)?\]", "<Component>]")
    elif kind == "sep" and top_count == n:
        column = Column(kind, re.escape(top), top, role="none")
    else:
        column = Column(kind, rf"{{g}}{_TOKEN})", "<Field>", constant=constant)
    column.separator = _separator([m["_s"] for m in hits])
    return column


def _advance(column: Column, heads: list[str], pos: list[int], active: list[int]) -> list[int]:
    """The lines that still match with this column added, each moved past it. A column of a kind that
    may be missing (not a timestamp, level or component) that some lines lack becomes optional, and
    those lines stay in play where they are."""
    regex = re.compile(column.regex("_p_" if column.kind == "time" else "_p") + _SEP)
    kept = []
    for i in active:
        m = regex.match(heads[i], pos[i])
        if m:
            pos[i] = m.end()
            kept.append(i)
    if len(kept) < len(active) and not _is_anchor(column):
        column.optional = True
        return active
    return kept


def _next_column(heads: list[str], pos: list[int], active: list[int], step: int) -> Column | None:
    if step < 8:
        column = _time_column(heads, pos, active)
        if column is not None:
            return column
    separated = 0
    for kind, test in _KINDS:
        hits = [m for i in active if (m := test.match(heads[i], pos[i]))]
        if len(hits) >= COVERAGE * len(active):
            return _column(kind, hits, len(active))
        if kind == "sep":
            separated = len(hits)
        elif kind == "int" and separated:
            # Some lines have a separator here and most of the others one token later (`chrome.exe - …`,
            # `chrome.exe *64 - …`): that token is an optional column, and the next step finds the separator.
            flags = [m for i in active if (m := _FLAG_THEN_SEP.match(heads[i], pos[i]))]
            if separated + len(flags) >= COVERAGE * len(active):
                return Column("flag", rf"{{g}}{_NOT_SEP})", "<Flag>", separator=_separator([m["_s"] for m in flags]))
    return None


def _is_anchor(c: Column) -> bool:
    return c.kind in ("time", "level", "component", "closer") or c.component_in is not None


def _header_length(columns: list[Column]) -> int:
    """How many columns are header: up to the last anchor, then the structural ones right after it (a
    separator may close one more column: `<W> Pool - message`). A constant between two anchors is no
    weak column, but a constant after the last is the message's first word (`request … served`)."""
    end = weak = 0
    anchored = False
    for i, c in enumerate(columns):
        if _is_anchor(c):
            end, weak, anchored = i + 1, 0, True
        elif anchored and (weak == 0 or (weak == 1 and c.kind == "sep")) and (
            c.kind in ("bracket", "sep", "dotted") or c.separator in ("padded", "|", "\t")
        ):
            end, weak = i + 1, 0
        elif not c.constant:
            weak += 1
            if weak > (MAX_GAP if anchored else MAX_LEAD):
                break
    return end


def _component_column(columns: list[Column]) -> Column | None:
    """`component:`, a bracket holding a class, a dotted name; else the word right before the level
    (`RAS KERNEL INFO`), the first padded, piped or `-`-closed word after the timestamp, or the first word
    before it."""
    for c in columns:
        if c.kind in ("component", "closer") or c.component_in is not None:
            return c
    for c in columns:
        if c.kind == "dotted" and not c.constant:
            return c
    level = next((i for i, c in enumerate(columns) if c.role == "level"), None)
    first_time = next((i for i, c in enumerate(columns) if c.kind == "time"), -1)
    before_level = [c for c in columns[first_time + 1 : level] if c.kind != "sep"] if level is not None else []
    closed = [
        c for i, c in enumerate(columns) if i > first_time and (
            c.separator in ("padded", "|", "\t") or (i + 1 < len(columns) and columns[i + 1].kind == "sep"))
    ]
    # A word before an id: components rarely have digits, hosts and nodes mostly do.
    for kind in ("word", "id"):
        for c in (before_level[-1:] + closed):
            if c.kind == kind and not c.constant:
                return c
    # Last, the first word among the columns before the timestamp (`134681 node-246 unix.hw boot 1077804742`).
    return next((c for c in columns[: max(first_time, 0)] if c.kind == "word" and not c.constant), None)


_FIELD_NAMES = {"int": ("pid", "tid"), "id": ("host",), "bracket": ("thread", "context"), "sep": ("flag",),
                "flag": ("flag",)}


def _assign_roles(columns: list[Column]) -> None:
    """Which column is the timestamp, the level and the component; the others are named extra fields,
    but for constants (`RAS`) and separators, which are kept out of the record."""
    times = [c for c in columns if c.kind == "time"]
    if times:
        # The most telling timestamp: a date and a time over an epoch, a date alone or a time alone.
        best = max(times, key=lambda c: (c.form.name not in ("HH:mm:ss", "yyyy-MM-dd"), len(c.form.name)))
        for c in times:
            c.role, c.name = ("ts", "t_") if c is best else ("none", f"_t{columns.index(c)}_")
    for c in columns:
        if c.kind == "level":
            c.role = "level"
            break
    component = _component_column(columns)
    if component is not None:
        component.role = "component"
        if component.kind in ("dotted", "word", "id"):
            component.placeholder = "<Component>"
    used: Counter = Counter()
    for i, c in enumerate(columns):
        if c.role in ("level", "component"):
            c.name = c.role
        elif c.role == "field" and c.constant:
            c.role, c.placeholder = "none", f"<Field{i}>"
        elif c.role == "field":
            options = _FIELD_NAMES.get(c.kind, ())
            c.name = options[used[c.kind]] if used[c.kind] < len(options) else f"field{i}"
            used[c.kind] += 1
            if c.label and c.label not in ("level", "component", "msg") and c.label not in [x.name for x in columns]:
                c.name = c.label
            title = c.name[0].upper() + c.name[1:]
            c.placeholder = rf"\[<{title}>\]" if c.kind == "bracket" else f"<{title}>"
    # `program[pid]:` holds the pid when no column of its own does.
    if component is not None and component.kind == "component" and "pid" not in [c.name for c in columns]:
        component.pattern = component.pattern.replace("(?P<cpid>", "(?P<pid>")


def induce(lines: list[str]) -> Layout | None:
    """The header layout of the file whose first lines are `lines`, or None if there is no consistent one."""
    heads = [ln for ln in lines if ln.strip() and not STACK_CONTINUATION.match(ln)][:SAMPLE]
    if len(heads) < 2:
        return None
    pos = [0] * len(heads)
    active = list(range(len(heads)))
    columns: list[Column] = []
    while len(columns) < MAX_COLUMNS:
        active = [i for i in active if pos[i] < len(heads[i])]
        if len(active) < len(heads) / 2:
            break
        column = _next_column(heads, pos, active, len(columns))
        if column is None:
            break
        columns.append(column)
        active = _advance(column, heads, pos, active)
    columns = columns[: _header_length(columns)]
    if not columns:
        return None
    _assign_roles(columns)
    layout = Layout(columns)
    if not any(c.role == "component" for c in columns):
        layout = Layout(columns, tail=sum(1 for ln in heads if _TAIL.search(ln)) >= COVERAGE * len(heads))
    layout.confidence = round(sum(1 for ln in heads if layout.regex.match(ln)) / len(heads), 2)
    return layout if layout.confidence >= MIN_CONFIDENCE else None
