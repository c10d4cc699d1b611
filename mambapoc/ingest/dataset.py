"""Dataset directories: where they live, and reading them back (`manifest.yaml`, `records.jsonl.gz`).

A manifest or records file that is corrupt, cut short or written by hand without the expected keys is a
one-line error naming the file, never a traceback.
"""

from __future__ import annotations

import gzip
import itertools
import json
import os
import zlib
from collections.abc import Iterator
from pathlib import Path

import yaml

from mambapoc.errors import UserError

MANIFEST = "manifest.yaml"
RECORDS = "records.jsonl.gz"
# What the commands that list and show datasets read from a manifest, with the type of each (a dict for
# a mapping's own keys, a one-item list for the shape of every item); `created` may be any YAML scalar.
_SHAPE = {
    "name": str,
    "created": object,
    "tool_version": str,
    "counts": {"records": int, "lines": int},
    "sources": [{"path": str, "format": str, "confidence": (int, float), "records": int}],
    "masking": {"enabled": bool},
    "fields": dict,
    "levels": dict,
    "labels": dict,
    "distinct_labels": int,
    "templates": {"count": int, "top": list},
}


def default_data_dir() -> Path:
    """`$MAMBAPOC_DATA_DIR`, else `data/` in the current directory."""
    return Path(os.environ.get("MAMBAPOC_DATA_DIR") or "data")


def data_root(data_dir: str | os.PathLike | None = None) -> Path:
    """The data directory (`data_dir`, else the default), which must be a directory if it exists."""
    root = Path(data_dir) if data_dir is not None else default_data_dir()
    if root.exists() and not root.is_dir():
        raise UserError(f"{root} is a file, not a data directory; give --data-dir a folder")
    return root


def list_datasets(data_dir: Path | None = None) -> list[Path]:
    """Dataset directories under the data directory, by name; unfinished (hidden) ones are left out."""
    root = data_root(data_dir)
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if not p.name.startswith(".") and (p / MANIFEST).is_file())


def resolve_dataset(name_or_path: str, data_dir: Path | None = None) -> Path:
    """A dataset directory given as a path, or as a NAME under the data directory."""
    path = Path(name_or_path)
    if (path / MANIFEST).is_file():
        return path
    root = data_root(data_dir)
    if (root / name_or_path / MANIFEST).is_file():
        return root / name_or_path
    names = [p.name for p in list_datasets(root)]
    available = f"available: {', '.join(names)}" if names else "there are none yet"
    raise UserError(
        f"dataset {name_or_path!r} not found in {root} ({available}); "
        "create it with `mambapoc ingest PATH --name NAME`"
    )


def read_manifest(ds_dir: Path) -> dict:
    path = Path(ds_dir) / MANIFEST
    try:
        with open(path, encoding="utf-8") as f:
            manifest = yaml.safe_load(f)
    except FileNotFoundError as e:
        raise UserError(f"{ds_dir}: not a dataset (no {MANIFEST})") from e
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise UserError(f"{path}: unreadable or corrupt manifest ({_first_line(e)}); ingest again with --force") from e
    wrong = _mismatch(manifest, _SHAPE, "")
    if wrong is not None:
        raise UserError(f"{path}: incomplete or corrupt manifest ({wrong}); ingest again with --force")
    return manifest


def _mismatch(value: object, shape: object, where: str) -> str | None:
    """Where `value` departs from `shape` (`no valid 'counts.records'`), None if it does not."""
    if isinstance(shape, dict):
        if not isinstance(value, dict):
            return f"no valid {where!r}" if where else "not a mapping"
        for key, sub in shape.items():
            found = _mismatch(value.get(key), sub, f"{where}.{key}" if where else key)
            if found is not None:
                return found
        return None
    if isinstance(shape, list):
        if not isinstance(value, list):
            return f"no valid {where!r}"
        return next((m for item in value if (m := _mismatch(item, shape[0], f"{where}[]")) is not None), None)
    if value is None or not isinstance(value, shape) or (shape is int and isinstance(value, bool)):
        return f"no valid {where!r}"
    return None


def _first_line(e: Exception) -> str:
    return str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__


def check_records(ds_dir: Path, manifest: dict) -> None:
    """A records file cut short or replaced since it was written (its size is in the manifest) is an error,
    found without reading it."""
    path = Path(ds_dir) / RECORDS
    expected = manifest.get("records_bytes")
    size = path.stat().st_size if path.is_file() else None
    if expected is not None and size != expected:
        raise UserError(
            f"{path}: truncated or corrupt records file ({size} bytes, {expected} when written); "
            "ingest again with --force"
        )


def iter_records(ds_dir: Path) -> Iterator[dict]:
    """The records one at a time, without loading the file."""
    path = Path(ds_dir) / RECORDS
    if not path.is_file():
        raise UserError(f"{ds_dir}: not a dataset (no {RECORDS})")
    try:
        with gzip.open(path, "rt", encoding="utf-8") as f:
            for line in f:
                yield json.loads(line)
    except (OSError, EOFError, zlib.error, UnicodeDecodeError, ValueError) as e:
        raise UserError(f"{path}: truncated or corrupt records file ({_first_line(e)}); ingest again with --force") from e


def load_records(ds_dir: Path, limit: int | None = None) -> list[dict]:
    return list(itertools.islice(iter_records(ds_dir), limit))
