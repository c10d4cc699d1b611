"""The ways logs write a date and time, as data: one table of forms that header induction, declared
formats and the built-in families all read timestamps with.

A form is a regular expression whose named groups are the parts of a date (`Y` year, `y` two-digit year,
`m` month, `b` month name, `d` day, `H` `M` `S` time, `f` fraction, `z` zone, `p` AM/PM, `e` epoch
seconds, `E` epoch milliseconds, `L` a level letter glued to the date as glog writes it). What a form
leaves out comes from the file: the year (from its modification date, as RFC 3164 syslog needs) or the
whole date for a time of day alone.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date

from mambapoc.ingest.fields import MONTHS, iso, iso_from_epoch

_TIME = r"(?P<H>\d{1,2}):(?P<M>\d\d)(?::(?P<S>\d\d))?(?:[.,:](?P<f>\d{1,9}))?"
_ZONE = r"(?:(?P<z>Z)|\s?(?P<z2>[+-]\d\d:?\d\d|UTC|GMT))?"
_AMPM = r"(?:\s?(?P<p>[AaPp][Mm]))?"
_MONTH = r"(?P<b>(?i:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*\.?)"
_WEEKDAY = r"(?:(?i:mon|tue|wed|thu|fri|sat|sun)[a-z]*,? )"
# What may follow a timestamp: a timestamp never runs into a word or a number.
_END = r"(?=[\s\]\[|,;)>]|$)"


@dataclass(frozen=True)
class TimeForm:
    """`name` says how the form reads; `pattern` is the regular expression, without the end."""

    name: str
    pattern: str

    def regex(self, prefix: str = "") -> str:
        """The pattern with its groups renamed `prefix + group`, so that several can share a regex."""
        return self.pattern.replace("(?P<", f"(?P<{prefix}") + _END


FORMS = (
    TimeForm("yyyy-MM-ddTHH:mm:ss", rf"(?P<Y>\d{{4}})-(?P<m>\d\d)-(?P<d>\d\d)T{_TIME}{_ZONE}"),
    TimeForm("yyyy-MM-dd HH:mm:ss", rf"(?P<Y>\d{{4}})-(?P<m>\d\d)-(?P<d>\d\d) {{1,2}}{_TIME}{_ZONE}"),
    TimeForm(
        "yyyy-MM-dd-HH.mm.ss",
        r"(?P<Y>\d{4})-(?P<m>\d\d)-(?P<d>\d\d)-(?P<H>\d\d)\.(?P<M>\d\d)\.(?P<S>\d\d)(?:\.(?P<f>\d{1,9}))?",
    ),
    TimeForm("yyyy/MM/dd HH:mm:ss", rf"(?P<Y>\d{{4}})/(?P<m>\d{{1,2}})/(?P<d>\d{{1,2}})[ :T]{_TIME}{_ZONE}"),
    TimeForm("yyyy.MM.dd HH:mm:ss", rf"(?P<Y>\d{{4}})\.(?P<m>\d\d)\.(?P<d>\d\d)[ T-]{_TIME}{_ZONE}"),
    TimeForm(
        "yyyyMMdd-HH:mm:ss",
        r"(?P<Y>(?:19|20)\d\d)(?P<m>[01]\d)(?P<d>[0-3]\d)[-T ]?(?P<H>[0-2]\d):?(?P<M>[0-5]\d):?(?P<S>[0-5]\d)"
        rf"(?:[.,:](?P<f>\d{{1,9}}))?{_ZONE}",
    ),
    TimeForm("yyMMdd HHmmss", r"(?P<y>\d\d)(?P<m>[01]\d)(?P<d>[0-3]\d) (?P<H>[0-2]\d)(?P<M>[0-5]\d)(?P<S>[0-5]\d)"),
    TimeForm("yy/MM/dd HH:mm:ss", rf"(?P<y>\d\d)/(?P<m>\d\d)/(?P<d>\d\d)[ :]{_TIME}"),
    TimeForm("M/d/yyyy h:mm:ss a", rf"(?P<m>\d{{1,2}})/(?P<d>\d{{1,2}})/(?P<Y>\d{{4}})[ ,:]+{_TIME}{_AMPM}"),
    TimeForm("d/M/yyyy H:mm:ss", rf"(?P<d>\d{{1,2}})/(?P<m>\d{{1,2}})/(?P<Y>\d{{4}})[ ,:]+{_TIME}{_AMPM}"),
    TimeForm("dd.MM.yyyy HH:mm:ss", rf"(?P<d>\d\d)\.(?P<m>\d\d)\.(?P<Y>\d{{4}})[ ,]+{_TIME}"),
    TimeForm("dd-MMM-yyyy HH:mm:ss", rf"(?P<d>\d{{1,2}})[-/ ]{_MONTH}[-/ ](?P<Y>\d{{4}})[: ]{_TIME}{_ZONE}"),
    TimeForm("MMM d, yyyy h:mm:ss a", rf"{_MONTH} (?P<d>\d{{1,2}}),? (?P<Y>\d{{4}}),? {_TIME}{_AMPM}"),
    TimeForm("EEE MMM d HH:mm:ss yyyy", rf"{_WEEKDAY}?{_MONTH} +(?P<d>\d{{1,2}}) {_TIME} (?P<Y>\d{{4}})"),
    TimeForm("MMM d HH:mm:ss", rf"{_WEEKDAY}?{_MONTH} +(?P<d>\d{{1,2}})(?: (?P<Y>\d{{4}}))? {_TIME}"),
    TimeForm("MM-dd HH:mm:ss", rf"(?P<m>[01]\d)-(?P<d>[0-3]\d) {_TIME}"),
    TimeForm("MM.dd HH:mm:ss", rf"(?P<m>[01]\d)\.(?P<d>[0-3]\d) {_TIME}"),
    TimeForm("LMMdd HH:mm:ss", rf"(?P<L>[DIWEF])(?P<m>[01]\d)(?P<d>[0-3]\d) {_TIME}"),
    TimeForm("epoch seconds", r"(?P<e>9\d{8}|1\d{9})(?:\.(?P<f>\d{1,9}))?"),
    TimeForm("epoch milliseconds", r"(?P<E>1\d{12})"),
    TimeForm("yyyy-MM-dd", r"(?P<Y>\d{4})[-./](?P<m>\d\d)[-./](?P<d>\d\d)"),
    TimeForm("HH:mm:ss", _TIME),
)


def year_for(month: int, modified: date) -> int:
    """A year for a date written without one: the file's, unless the month is after the file's modification
    date, which can only be the year before (a file spanning New Year)."""
    return modified.year if month <= modified.month else modified.year - 1


def _int(g: dict, key: str) -> int | None:
    v = g.get(key)
    return int(v) if v else None


def to_iso(g: dict, modified: date | None = None) -> str | None:
    """ISO 8601 from the groups of a form's match (without prefix); None when the values are no date (a
    month 13, an hour 25), so that a column of numbers is not taken for one."""
    if g.get("e"):
        return iso_from_epoch(float(g["e"] + ("." + g["f"] if g.get("f") else "")))
    if g.get("E"):
        return iso_from_epoch(float(g["E"]))
    modified = modified or date.today()
    month = MONTHS.get(g["b"][:3].title()) if g.get("b") else _int(g, "m")
    day, hour, minute, second = _int(g, "d"), _int(g, "H"), _int(g, "M"), _int(g, "S") or 0
    if month is None and day is None:
        month, day = modified.month, modified.day
        year = modified.year
    elif g.get("Y"):
        year = int(g["Y"])
    elif g.get("y"):
        year = 2000 + int(g["y"])
    else:
        year = year_for(month or 1, modified)
    if hour is not None and g.get("p"):
        hour = hour % 12 + (12 if g["p"].lower() == "pm" else 0)
    if not (month and 1 <= month <= 12 and day and 1 <= day <= 31 and 1970 <= year <= 2100):
        return None
    if hour is None:
        return f"{year:04d}-{month:02d}-{day:02d}"
    if hour > 23 or minute > 59 or second > 60:
        return None
    zone = g.get("z") or g.get("z2")
    zone = "Z" if zone in ("UTC", "GMT") else zone
    return iso(f"{year:04d}-{month:02d}-{day:02d}", f"{hour:02d}:{minute:02d}:{second:02d}", g.get("f"), zone)


def groups(m: re.Match, prefix: str) -> dict:
    """The date parts of a match of `form.regex(prefix)`, without the prefix."""
    n = len(prefix)
    return {k[n:]: v for k, v in m.groupdict().items() if v is not None and k.startswith(prefix)}


_WHOLE = [re.compile(form.regex()) for form in FORMS]


class TimeParser:
    """Timestamps from text in any form of the table. A file keeps one form, so the one that read the last
    value is tried first: after the first line each value costs one match."""

    def __init__(self) -> None:
        self._last: re.Pattern | None = None

    def __call__(self, text: str, modified: date | None = None) -> str | None:
        text = text.strip().strip("[]").strip()
        if self._last is not None:
            m = self._last.fullmatch(text)
            value = to_iso(m.groupdict(), modified) if m else None
            if value is not None:
                return value
        for regex in _WHOLE:
            m = regex.fullmatch(text)
            if m:
                value = to_iso(m.groupdict(), modified)
                if value is not None:
                    self._last = regex
                    return value
        return None


parse_timestamp = TimeParser()
