"""The run directory's results.jsonl: one line per finished cell, never rewritten.

Each cell is appended with a single `write` of one complete line and then fsync'ed, so a crash, a
Ctrl-C or a SIGKILL can at worst leave a torn last line, which readers skip and `--resume` redoes.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

RESULTS = "results.jsonl"


def read_cells(run_dir: Path) -> list[dict]:
    path = Path(run_dir) / RESULTS
    if not path.is_file():
        return []
    cells = []
    with path.open("rb") as f:
        for raw in f:
            if not raw.endswith(b"\n"):
                break  # a torn final line from an interrupted write
            try:
                cells.append(json.loads(raw))
            except json.JSONDecodeError:
                continue
    return cells


def finished_ids(run_dir: Path) -> set[str]:
    return {c["cell_id"] for c in read_cells(run_dir) if "cell_id" in c}


class ResultStore:
    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / RESULTS
        self._drop_torn_tail()

    def _drop_torn_tail(self) -> None:
        # A torn line must not swallow the next append: cut the file back to its last newline.
        if not self.path.is_file():
            return
        with self.path.open("rb+") as f:
            data = f.read()
            if data and not data.endswith(b"\n"):
                f.truncate(data.rfind(b"\n") + 1)

    def append(self, cell: dict) -> None:
        line = (json.dumps(cell, sort_keys=True, default=_jsonable) + "\n").encode()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)


def _jsonable(o):
    if hasattr(o, "item"):
        return o.item()
    raise TypeError(f"{type(o).__name__} is not JSON serialisable")
