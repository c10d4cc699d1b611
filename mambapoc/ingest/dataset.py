"""Dataset directories: where they live, and reading them back (`manifest.yaml`, `records.jsonl.gz`)."""

from __future__ import annotations

import gzip
import itertools
import json
import os
from collections.abc import Iterator
from pathlib import Path

import yaml

from mambapoc.errors import UserError

MANIFEST = "manifest.yaml"
RECORDS = "records.jsonl.gz"


def default_data_dir() -> Path:
    """`$MAMBAPOC_DATA_DIR`, else `data/` in the current directory."""
    return Path(os.environ.get("MAMBAPOC_DATA_DIR") or "data")


def list_datasets(data_dir: Path | None = None) -> list[Path]:
    """Dataset directories under the data directory, by name; unfinished (hidden) ones are left out."""
    root = data_dir if data_dir is not None else default_data_dir()
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if not p.name.startswith(".") and (p / MANIFEST).is_file())


def resolve_dataset(name_or_path: str, data_dir: Path | None = None) -> Path:
    """A dataset directory given as a path, or as a NAME under the data directory."""
    path = Path(name_or_path)
    if (path / MANIFEST).is_file():
        return path
    root = data_dir if data_dir is not None else default_data_dir()
    if (root / name_or_path / MANIFEST).is_file():
        return root / name_or_path
    names = [p.name for p in list_datasets(root)]
    available = f"available: {', '.join(names)}" if names else "there are none yet"
    raise UserError(
        f"dataset {name_or_path!r} not found in {root} ({available}); "
        "create it with `mambapoc ingest PATH --name NAME`"
    )


def read_manifest(ds_dir: Path) -> dict:
    try:
        with open(Path(ds_dir) / MANIFEST, encoding="utf-8") as f:
            return yaml.safe_load(f)
    except FileNotFoundError as e:
        raise UserError(f"{ds_dir}: not a dataset (no {MANIFEST})") from e


def iter_records(ds_dir: Path) -> Iterator[dict]:
    """The records one at a time, without loading the file."""
    path = Path(ds_dir) / RECORDS
    if not path.is_file():
        raise UserError(f"{ds_dir}: not a dataset (no {RECORDS})")
    with gzip.open(path, "rt", encoding="utf-8") as f:
        for line in f:
            yield json.loads(line)


def load_records(ds_dir: Path, limit: int | None = None) -> list[dict]:
    return list(itertools.islice(iter_records(ds_dir), limit))
