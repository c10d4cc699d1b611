"""Line-oriented log formats: how each one's first line of an event looks and what its fields are."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date

from mambapoc.ingest.fields import MONTHS, SYSLOG_SEVERITIES, iso, iso_from_text, normalize_level
from mambapoc.ingest.timestamps import TimeParser, year_for

# Timestamp, level as written, component.
Fields = tuple[str | None, str | None, str | None]
# Groups of a named format that are not extra fields of its records.
ROLES = ("ts", "level", "component", "msg")
_STACK = r"[ \t]+\S|Caused by: |\.\.\. \d+ more"
# Lines that continue the event before them in formats that do not join every unmatched line: stack frames
# and indented lines, `Caused by:` chains, and an exception's own first line.
STACK_CONTINUATION = re.compile(rf"{_STACK}|(?:[a-z_$][\w$]*\.)+[\w$]*(?:Exception|Error|Throwable)\b")

_LEVEL_WORD = (
    r"(?i:TRACE|DEBUG|INFO|NOTICE|WARN(?:ING)?|ERROR|SEVERE|FATAL|CRIT(?:ICAL)?|FINEST|FINER|FINE|CONFIG)"
)


@dataclass(frozen=True)
class LineFormat:
    """`header` matches the first line of an event; its `msg` group is the message (what follows it on
    the line, if anything, is kept in the text but not in the message). `fields` turns a match into
    fields; it gets the source's modification date because some formats (RFC 3164 syslog) leave the year
    out. `level_of` normalises the level as written. `joins_unmatched`: a line that does not match belongs
    to the event before it (stack traces). `continuation`: lines that join the event before them even
    though the header would match them. `extras`: groups whose values become the record's extra fields
    (a `-` is no value). `piece`: for a format that splits long lines, a matched line's stream and whether
    it is a piece to be joined with the next line of that stream."""

    name: str
    header: re.Pattern
    fields: Callable[[re.Match, date], Fields]
    joins_unmatched: bool
    continuation: re.Pattern | None = None
    level_of: Callable[[str | None], str | None] = normalize_level
    extras: tuple[str, ...] = ()
    # Formats whose writer splits a long line into pieces (CRI's `P` tag): the stream a matched line
    # belongs to, and whether its message goes on in the next line of that stream.
    piece: Callable[[re.Match], tuple[str, bool]] | None = None


def _group(m: re.Match, name: str) -> str | None:
    return m[name] if name in m.re.groupindex else None


def named(
    name: str,
    header: str | re.Pattern,
    joins_unmatched: bool = False,
    timestamp: Callable[[re.Match, date], str | None] | None = None,
) -> LineFormat:
    """A format described by its regular expression alone: groups `ts` (any form of the timestamp table),
    `level`, `component` and `msg`; every other named group is an extra field. Unmatched lines join the
    event before them when they look like a stack trace, or always with `joins_unmatched`."""
    header = re.compile(header) if isinstance(header, str) else header
    if timestamp is None:
        parse = TimeParser()

        def timestamp(m: re.Match, modified: date) -> str | None:
            text = _group(m, "ts")
            return parse(text, modified) if text else None

    def fields(m: re.Match, modified: date) -> Fields:
        return timestamp(m, modified), _group(m, "level"), _group(m, "component")

    return LineFormat(
        name,
        header,
        fields,
        joins_unmatched,
        continuation=None if joins_unmatched else STACK_CONTINUATION,
        extras=tuple(g for g in header.groupindex if g not in ROLES and not g.startswith("_")),
    )


def _syslog_fields(m: re.Match, modified: date) -> Fields:
    if m["mon"]:
        month = MONTHS.get(m["mon"], 1)
        ts = iso(f"{year_for(month, modified)}-{month:02d}-{int(m['day']):02d}", m["time"])
    else:
        ts = iso_from_text(m["iso"])
    level = SYSLOG_SEVERITIES[int(m["pri"]) % 8] if m["pri"] else m["mlevel"]
    return ts, level, m["tag"]


SYSLOG = LineFormat(
    "syslog",
    # Without a priority, a level word that opens the message (`<warning>`, `[ERROR]`, `error:`) is the level.
    re.compile(
        r"(?:<(?P<pri>\d{1,3})>)?"
        r"(?:(?P<mon>[A-Z][a-z]{2}) +(?P<day>\d{1,2}) (?P<time>\d\d:\d\d:\d\d)"
        r"|(?P<iso>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:\d\d)?)) "
        r"(?P<host>\S+) (?:(?P<tag>[^\s:\[]+)(?:\[(?P<pid>\d+)\])?: )?"
        rf"(?:[<\[]?(?P<mlevel>{_LEVEL_WORD})[>\]]?:? +(?=\S))?(?P<msg>.*)"
    ),
    _syslog_fields,
    joins_unmatched=False,
    extras=("host", "pid"),
)


def _syslog5424_fields(m: re.Match, modified: date) -> Fields:
    ts = None if m["ts"] == "-" else iso_from_text(m["ts"])
    return ts, SYSLOG_SEVERITIES[int(m["pri"]) % 8], None if m["app"] == "-" else m["app"]


SYSLOG5424 = LineFormat(
    "syslog5424",
    re.compile(
        r"<(?P<pri>\d{1,3})>1 (?P<ts>\S+) (?P<host>\S+) (?P<app>\S+) (?P<procid>\S+) (?P<msgid>\S+) "
        r"(?P<sd>-|(?:\[(?:[^\]\"\\]|\\.|\"(?:[^\"\\]|\\.)*\")*\])+) ?\ufeff?(?P<msg>.*)"
    ),
    _syslog5424_fields,
    joins_unmatched=False,
)


def _access_fields(m: re.Match, modified: date) -> Fields:
    t = m["ts"]  # 10/Oct/2000:13:55:36 -0700
    ts = None
    if len(t) >= 20 and t[2] == "/" and t[6] == "/":
        month = MONTHS.get(t[3:6], 1)
        ts = iso(f"{t[7:11]}-{month:02d}-{t[0:2]}", t[12:20], None, t[21:].strip() or None)
    return ts, m["status"], None


def _status_level(status: str | None) -> str | None:
    """An access log has no level; the status class stands in for one."""
    if not status or not status.isdigit():
        return None
    return "ERROR" if status >= "500" else "WARN" if status >= "400" else "INFO"


ACCESS = LineFormat(
    "access",
    # Common and combined log formats. The message is the request, status and size; the referer, user
    # agent and whatever a custom format appends (request time, ids) follow it in the text.
    re.compile(
        r"(?P<client>\S+) (?P<ident>\S+) (?P<user>\S+) \[(?P<ts>[^\]]+)\] "
        r"(?P<msg>\"(?:[^\"\\]|\\.)*\" (?P<status>\d{3}|-) (?:\d+|-))"
    ),
    _access_fields,
    joins_unmatched=False,
    level_of=_status_level,
)


def _apache_error_fields(m: re.Match, modified: date) -> Fields:
    month = MONTHS.get(m["mon"], 1)
    ts = iso(f"{m['year']}-{month:02d}-{int(m['day']):02d}", m["time"], m["frac"])
    return ts, m["level"], m["module"] or None


APACHE_ERROR = LineFormat(
    "apache-error",
    re.compile(
        r"\[\w{3} (?P<mon>\w{3}) +(?P<day>\d{1,2}) (?P<time>\d\d:\d\d:\d\d)(?:\.(?P<frac>\d+))? "
        r"(?P<year>\d{4})\] "
        r"\[(?:(?P<module>[\w.-]*):)?(?P<level>\w+)\] ?(?P<msg>.*)"
    ),
    _apache_error_fields,
    joins_unmatched=True,
)


def _log4j_fields(m: re.Match, modified: date) -> Fields:
    day = m["date"] or f"20{m['sdate'][:2]}-{m['sdate'][3:5]}-{m['sdate'][6:8]}"
    return iso(day, m["time"], m["frac"], m["tz"]), m["level"] or m["level2"], m["logger"] or m["logger2"]


LOG4J = LineFormat(
    "log4j",
    # `2015-10-18 18:01:47,978 INFO [main] org.x.Y: msg` (log4j), `17/06/09 20:10:40 INFO storage.X: msg`
    # (Spark's yy/MM/dd) and `2015-10-18 18:01:47.978 [main] INFO  org.x.Y - msg` (logback); the logger is
    # a dotted name, or a plain one followed by a colon (`%c{1}: %m`).
    re.compile(
        r"(?:(?P<date>\d{4}-\d\d-\d\d)|(?P<sdate>\d\d/\d\d/\d\d))[ T](?P<time>\d\d:\d\d:\d\d)"
        r"(?:[,.](?P<frac>\d{1,9}))?(?P<tz>Z|[+-]\d\d:?\d\d)? +"
        rf"(?:(?P<level>{_LEVEL_WORD}) +(?:\[[^\]]*\] +)?|\[[^\]]*\] +(?P<level2>{_LEVEL_WORD}) +)"
        r"(?:(?P<logger>[\w$]+(?:\.[\w$]+)+) *(?:[:-] +|:?$)|(?P<logger2>[\w$]+): +)?(?P<msg>.*)"
    ),
    _log4j_fields,
    joins_unmatched=True,
)


def _hdfs_fields(m: re.Match, modified: date) -> Fields:
    d, t = m["date"], m["time"]
    return iso(f"20{d[0:2]}-{d[2:4]}-{d[4:6]}", f"{t[0:2]}:{t[2:4]}:{t[4:6]}"), m["level"], m["component"]


HDFS = LineFormat(
    "hdfs",
    re.compile(
        r"(?P<date>\d{6}) (?P<time>\d{6}) (?P<pid>\d+) (?P<level>[A-Z]+) (?P<component>[\w$.]+): (?P<msg>.*)"
    ),
    _hdfs_fields,
    joins_unmatched=True,
)


def _plain_fields(m: re.Match, modified: date) -> Fields:
    return (iso_from_text(m["ts"]) if m["ts"] else None), m["level"], None


PLAIN = LineFormat(
    "plain",
    # Any line; a leading ISO timestamp and a level word right after it are picked up when present.
    re.compile(
        r"(?:(?P<ts>\d{4}-\d\d-\d\d[T ]\d\d:\d\d(?::\d\d(?:[.,]\d+)?)?(?:Z|[+-]\d\d:?\d\d)?) +)?"
        rf"(?:\[?(?P<level>{_LEVEL_WORD})\]?:? +)?(?P<msg>.*)"
    ),
    _plain_fields,
    joins_unmatched=False,
    continuation=re.compile(_STACK),
)

HAND_WRITTEN = {f.name: f for f in (SYSLOG, SYSLOG5424, ACCESS, APACHE_ERROR, LOG4J, HDFS, PLAIN)}
