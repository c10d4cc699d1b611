"""JSON lines, as log shippers write them: common key names give the fields, nested objects are
flattened into `key.sub=value` pairs in the text."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Iterator

from mambapoc.ingest.event import Event
from mambapoc.ingest.fields import SYSLOG_SEVERITIES, iso_from_epoch, normalize_level
from mambapoc.ingest.timestamps import parse_timestamp

# First key present wins; keys are the flattened, dotted names.
TIME_KEYS = (
    "@timestamp",
    "timestamp",
    "time",
    "ts",
    "datetime",
    "date",
    "eventTime",
    "event.created",
    "_SOURCE_REALTIME_TIMESTAMP",
    "__REALTIME_TIMESTAMP",
    "TimeCreated",
)
LEVEL_KEYS = (
    "level",
    "log.level",
    "severity",
    "levelname",
    "lvl",
    "loglevel",
    "severity_text",
    "priority",
    "PRIORITY",
    "LevelDisplayName",
    "Level",
)
COMPONENT_KEYS = (
    "logger",
    "log.logger",
    "logger_name",
    "component",
    "service.name",
    "service",
    "app",
    "application",
    "module",
    "name",
    "source",
    "SYSLOG_IDENTIFIER",
    "_SYSTEMD_UNIT",
    "ProviderName",
    "eventSource",
)
MESSAGE_KEYS = ("message", "msg", "log", "text", "event.original", "body", "event", "MESSAGE", "Message", "eventName")
# A Docker line is joined up to this length; past it the rest is an event of its own (a runaway stream).
MAX_JOINED_CHARS = 1 << 20
# Numeric levels of pino and bunyan (10 to 60), the usual numeric scheme in JSON logs; 0 to 7 are syslog
# severities (journald's PRIORITY).
_NUMERIC_LEVELS = ((60, "FATAL"), (50, "ERROR"), (40, "WARN"), (30, "INFO"), (20, "DEBUG"), (10, "TRACE"))


def _level(raw: str) -> str | None:
    if raw.isdigit():
        if int(raw) < len(SYSLOG_SEVERITIES):
            return normalize_level(SYSLOG_SEVERITIES[int(raw)])
        return next((name for floor, name in _NUMERIC_LEVELS if int(raw) >= floor), None)
    return normalize_level(raw)


def flatten(obj: dict, prefix: str = "") -> dict[str, object]:
    """`{"a": {"b": 1}, "c": [1, 2]}` → `{"a.b": 1, "c": [1, 2]}`: lists stay whole values."""
    out: dict[str, object] = {}
    for k, v in obj.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def _scalar(v: object) -> str:
    if isinstance(v, str):
        return v
    return json.dumps(v, ensure_ascii=False, separators=(",", ":"))


def _timestamp(v: object) -> str | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, (int, float)):
        return iso_from_epoch(float(v))
    if isinstance(v, str):
        return iso_from_epoch(float(v)) if v.isdigit() else parse_timestamp(v)
    return None


def _pick(flat: dict[str, object], keys: Iterable[str]) -> tuple[str | None, object]:
    for k in keys:
        v = flat.get(k)
        if v is not None and v != "" and not isinstance(v, (dict, list)):
            return k, v
    return None, None


def event_from(
    no: int, obj: dict, text_field: str | None = None, label_field: str | None = None
) -> Event:
    """The event of one JSON object (or any mapping of names to values: logfmt, a Windows event). The text
    reads `TIME LEVEL COMPONENT: MESSAGE | k=v ...` with every other field as `k=v`."""
    flat = flatten(obj)
    message_keys = (text_field, *MESSAGE_KEYS) if text_field else MESSAGE_KEYS
    ts_key, ts_value = _pick(flat, TIME_KEYS)
    level_key, level_value = _pick(flat, LEVEL_KEYS)
    component_key, component_value = _pick(flat, COMPONENT_KEYS)
    message_key, message_value = _pick(flat, message_keys)
    timestamp = _timestamp(ts_value)
    # An unparseable time stays in the text as it was written.
    used = {level_key, component_key, message_key, ts_key if timestamp else None}
    label = None
    if label_field is not None and flat.get(label_field) is not None:
        used.add(label_field)
        label = _scalar(flat[label_field])
    level_raw = _scalar(level_value) if level_value is not None else None
    component = _scalar(component_value) if component_value is not None else None
    head = [p for p in (timestamp, level_raw.upper() if level_raw else None) if p]
    if component:
        head.append(component + ":")
    # journald's `__CURSOR`, `__MONOTONIC_TIMESTAMP`: addresses of the entry in the journal, not content.
    rest = " ".join(f"{k}={_scalar(v)}" for k, v in flat.items() if k not in used and not k.startswith("__"))
    return Event(
        no,
        _scalar(message_value).rstrip("\n") if message_value is not None else "",
        prefix=" ".join(head) + " " if head else "",
        suffix=f" | {rest}" if rest else "",
        timestamp=timestamp,
        level=_level(level_raw) if level_raw else None,
        level_raw=level_raw,
        component=component,
        label=label,
    )


def events(
    lines: Iterable[str], counts: Counter, text_field: str | None = None, label_field: str | None = None
) -> Iterator[Event]:
    """One event per JSON object line; a line that is not a JSON object is kept as raw text
    (`broken_lines`). Docker's json-file driver splits a long output line into pieces (16 KB) whose `log`
    lacks the final newline: the pieces of one stream are joined into one event (`joined_pieces`)."""
    split: tuple[int, dict] | None = None  # the first line and the object of a line still being joined
    for no, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except (ValueError, RecursionError):  # RecursionError: `[[[[…` nested past the stack
            obj = None
        if not isinstance(obj, dict):
            if split:
                yield event_from(*split, text_field, label_field)
                split = None
            counts["broken_lines"] += 1
            yield Event(no, line)
            continue
        if split and obj.get("stream") == split[1].get("stream") and isinstance(obj.get("log"), str):
            split[1]["log"] += obj["log"]  # the line goes on: its time stays the first piece's
            counts["joined_pieces"] += 1
            obj = split[1]
            no = split[0]
        elif split:
            yield event_from(*split, text_field, label_field)
        split = None
        if _docker_piece(obj) and len(obj["log"]) < MAX_JOINED_CHARS:
            split = (no, obj)
            continue
        yield event_from(no, obj, text_field, label_field)
    if split:
        yield event_from(*split, text_field, label_field)


def _docker_piece(obj: dict) -> bool:
    """A json-file record whose output line goes on in the next record of its stream."""
    log = obj.get("log")
    return isinstance(log, str) and "stream" in obj and bool(log) and not log.endswith("\n")
