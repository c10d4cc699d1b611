"""Running statistics over the records written, for the manifest and `mambapoc datasets show`."""

from __future__ import annotations

from collections import Counter

from mambapoc.ingest.fields import LEVELS

OPTIONAL_FIELDS = ("timestamp", "level", "component", "template_id", "label")
# Distinct labels and components kept: past it, new values are counted together as "(other)", so a
# column of free text given as a label cannot grow memory with the input.
MAX_DISTINCT = 10_000
OTHER = "(other)"


def _bump(counter: Counter, key: str) -> None:
    if key in counter or len(counter) < MAX_DISTINCT:
        counter[key] += 1
    else:
        counter[OTHER] += 1


class Stats:
    def __init__(self) -> None:
        self.records = 0
        self.present: Counter = Counter()
        self.levels: Counter = Counter()
        self.labels: Counter = Counter()
        self.components: Counter = Counter()

    def add(self, record: dict) -> None:
        self.records += 1
        for field in OPTIONAL_FIELDS:
            if record[field] is not None:
                self.present[field] += 1
        if record["level"] is not None:
            self.levels[record["level"]] += 1
        if record["label"] is not None:
            _bump(self.labels, record["label"])
        if record["component"] is not None:
            _bump(self.components, record["component"])

    def manifest(self, top: int = 20) -> dict:
        n = max(self.records, 1)
        return {
            "fields": {f: round(self.present[f] / n, 4) for f in OPTIONAL_FIELDS},
            "levels": {lv: self.levels[lv] for lv in LEVELS if self.levels[lv]},
            "labels": dict(self.labels.most_common(100)),
            "distinct_labels": len(self.labels),
            "components": dict(self.components.most_common(top)),
        }
