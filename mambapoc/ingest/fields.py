"""Normalising levels and timestamps, which every format writes in its own way."""

from __future__ import annotations

import re
from datetime import datetime, timezone

LEVELS = ("TRACE", "DEBUG", "INFO", "NOTICE", "WARN", "ERROR", "FATAL")

_LEVEL_NAMES = {
    "trace": "TRACE",
    "finest": "TRACE",
    "finer": "TRACE",
    "debug": "DEBUG",
    "dbg": "DEBUG",
    "fine": "DEBUG",
    "verbose": "DEBUG",
    "vrb": "DEBUG",
    "v": "DEBUG",
    "d": "DEBUG",
    "config": "DEBUG",
    "info": "INFO",
    "information": "INFO",
    "informational": "INFO",
    "inf": "INFO",
    "i": "INFO",
    "log": "INFO",
    "notice": "NOTICE",
    "warn": "WARN",
    "warning": "WARN",
    "wrn": "WARN",
    "w": "WARN",
    "error": "ERROR",
    "err": "ERROR",
    "severe": "ERROR",
    "e": "ERROR",
    "failure": "ERROR",
    "fatal": "FATAL",
    "ftl": "FATAL",
    "f": "FATAL",
    "a": "FATAL",
    "critical": "FATAL",
    "crit": "FATAL",
    "alert": "FATAL",
    "emerg": "FATAL",
    "emergency": "FATAL",
    "panic": "FATAL",
}
# Level names a header column may hold, longest first so that an alternation takes `warning` whole. Single
# letters (Android's V D I W E F A, glog's I W E F) are only levels in upper case.
LEVEL_WORDS = tuple(sorted((k for k in _LEVEL_NAMES if len(k) > 1), key=len, reverse=True))
LEVEL_LETTERS = "".join(sorted(k.upper() for k in _LEVEL_NAMES if len(k) == 1))
# Syslog severities (RFC 5424 section 6.2.1), indexed by PRI % 8.
SYSLOG_SEVERITIES = ("emerg", "alert", "crit", "err", "warning", "notice", "info", "debug")


def normalize_level(raw: str | None) -> str | None:
    """TRACE ... FATAL for a level name as written (`warning`, `E`, `crit`), None when unknown."""
    return _LEVEL_NAMES.get(raw.strip().lower()) if raw else None


MONTHS = {
    m: i
    for i, m in enumerate(
        ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), start=1
    )
}

_ISO = re.compile(
    r"(\d{4})-(\d\d)-(\d\d)[T ](\d\d):(\d\d)(?::(\d\d)(?:[.,](\d{1,9}))?)?\s*(Z|[+-]\d\d:?\d\d)?$"
)


def iso(date: str, time: str, frac: str | None = None, tz: str | None = None) -> str:
    """`2015-10-18`, `18:01:47`, `978`, `+0200` → `2015-10-18T18:01:47.978+02:00`. Strings are assembled
    directly: strptime would cost more than the rest of a line's parsing."""
    out = f"{date}T{time}"
    if frac:
        out += "." + frac
    if tz:
        out += "Z" if tz == "Z" else (tz if ":" in tz else f"{tz[:3]}:{tz[3:]}")
    return out


def iso_from_text(value: str) -> str | None:
    """An ISO-like timestamp string in any of the common spellings, normalised; None if it is not one."""
    m = _ISO.match(value.strip())
    if not m:
        return None
    y, mo, d, h, mi, s, frac, tz = m.groups()
    return iso(f"{y}-{mo}-{d}", f"{h}:{mi}:{s or '00'}", frac, tz)


def iso_from_epoch(value: float) -> str | None:
    """Seconds, milliseconds, microseconds (journald) or nanoseconds since the epoch, told apart by
    magnitude, as UTC ISO 8601."""
    while value > 1e11:
        value /= 1000.0
    try:
        return datetime.fromtimestamp(value, tz=timezone.utc).isoformat().replace("+00:00", "Z")
    except (OverflowError, OSError, ValueError):
        return None
