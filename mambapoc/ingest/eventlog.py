"""Windows Event Logs exported as XML (Event Viewer's "Save as XML", `wevtutil qe /f:xml`,
`Get-WinEvent | … ToXml()`): one record per `<Event>`, read as a stream.

The provider is the component, `<Level>` the level (Windows numbers it: 1 critical … 5 verbose),
`<TimeCreated SystemTime=…>` the timestamp, the rendered `<Message>` the message (or the event's data when
it was exported without one); the event id, computer, channel and data are `k=v` in the text.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Iterator
from xml.etree import ElementTree

from mambapoc.ingest.event import Event
from mambapoc.ingest.jsonlines import event_from

SCHEMA = "schemas.microsoft.com/win/2004/08/events/event"
_LEVELS = {"0": "Information", "1": "Critical", "2": "Error", "3": "Warning", "4": "Information", "5": "Verbose"}
_DECLARATION = re.compile(r"<\?xml[^>]*\?>")


def _local(tag: str) -> str:
    return tag.rpartition("}")[2]


def _mapping(event: ElementTree.Element) -> dict:
    """The event as names and values (then read like a JSON object)."""
    out: dict = {}
    data: dict = {}
    for el in event.iter():
        name = _local(el.tag)
        text = (el.text or "").strip()
        if name == "Provider":
            out["ProviderName"] = el.get("Name") or el.get("EventSourceName")
        elif name == "TimeCreated":
            out["TimeCreated"] = el.get("SystemTime")
        elif name == "Data":
            data[el.get("Name") or f"Data{len(data)}"] = text
        elif name in ("EventID", "Computer", "Channel", "Message") and text:
            out[name] = text
        elif name == "Level" and text:
            out["LevelDisplayName"] = _LEVELS.get(text, text)
        elif name == "Execution":
            out["ProcessID"] = el.get("ProcessID")
    if "Message" not in out and data:
        out["Message"] = " ".join(f"{k}={v}" for k, v in data.items())
    else:
        out.update({f"Data.{k}": v for k, v in data.items()})
    return {k: v for k, v in out.items() if v}


def events(
    lines: Iterable[str], counts: Counter, text_field: str | None = None, label_field: str | None = None
) -> Iterator[Event]:
    """One event per `<Event>` element; XML that stops parsing ends the file (counted in `broken_lines`)."""
    parser = ElementTree.XMLPullParser(events=("start", "end"))
    # A root of our own: `wevtutil` writes events one after the other, with no element around them.
    parser.feed("<mambapoc-events>")
    open_elements: list[ElementTree.Element] = []
    start = 0
    for no, line in enumerate(lines, start=1):
        try:
            parser.feed(_DECLARATION.sub("", line) + "\n")
            for kind, el in parser.read_events():
                if kind == "start":
                    open_elements.append(el)
                    start = no if _local(el.tag) == "Event" else start
                    continue
                open_elements.pop()
                if _local(el.tag) == "Event":
                    yield event_from(start, _mapping(el), text_field, label_field)
                    open_elements[-1].remove(el)  # memory stays that of one event
        except ElementTree.ParseError:
            counts["broken_lines"] += 1
            return
