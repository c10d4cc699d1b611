"""The unit every reader produces: one log event or document chunk, before masking."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class Event:
    """A parsed event. `prefix + message + suffix` is the event as written (or, for JSON and CSV, as
    rendered for a model); each part is masked separately so that the message stays a substring of the
    masked text and nothing is masked or counted twice. The suffix is what follows the message on its
    line when that is not part of it (an access log's referer and user agent)."""

    line: int
    message: str
    prefix: str = ""
    suffix: str = ""
    timestamp: str | None = None
    level: str | None = None  # normalised, see fields.LEVELS
    level_raw: str | None = None
    component: str | None = None
    label: str | None = None
    # Other header fields of the format (`pid`, `host`, `thread`, …), by name.
    fields: dict[str, str] | None = None
    # Documents are prose: mining a template per paragraph would only fill the template table.
    mine_template: bool = True
