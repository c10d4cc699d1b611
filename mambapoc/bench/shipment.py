"""Directories that travel with a remote task (`ray_executor.py`): what a directory holds, as a tar, and
where a node finds it: the driver's own path where the node has the same files (a shared filesystem), else
the tar unpacked under a temporary directory."""

from __future__ import annotations

import io
import os
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Shipment:
    """A directory of the driver's: its path, what it holds (relative path and size of each file), and
    once put in the object store, the tar of it (an ObjectRef, or bytes)."""

    path: str
    files: tuple[tuple[str, int], ...]
    blob: Any = None

    @property
    def size(self) -> int:
        return sum(n for _, n in self.files)


def contents(path: str | os.PathLike) -> tuple[tuple[str, int], ...] | None:
    """Relative path and size of every file under `path` (links followed; hidden files and directories, such
    as a training run's work files, left out), or None if it is no directory."""
    root = Path(path)
    if not root.is_dir():
        return None
    out = []
    for dirpath, dirs, names in os.walk(root, followlinks=True):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in names:
            if name.startswith("."):
                continue
            p = Path(dirpath) / name
            try:
                out.append((p.relative_to(root).as_posix(), p.stat().st_size))
            except OSError:
                continue
    return tuple(sorted(out))


def shipment(path: str | os.PathLike) -> Shipment:
    path = Path(path).expanduser().resolve()
    return Shipment(str(path), contents(path) or ())


def pack(path: str | os.PathLike) -> bytes:
    """The directory as an uncompressed tar (weights do not compress), links stored as the files they name."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", dereference=True) as tar:
        for rel, _ in contents(path) or ():
            tar.add(str(Path(path) / rel), arcname=rel, recursive=False)
    return buf.getvalue()


def unpack(data: bytes, dest: str | os.PathLike) -> None:
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r") as tar:
        if hasattr(tarfile, "data_filter"):
            tar.extractall(dest, filter="data")
        else:  # Python without extraction filters: plain files and directories inside dest only
            for m in tar.getmembers():
                if not (m.isfile() or m.isdir()) or Path(m.name).is_absolute() or ".." in Path(m.name).parts:
                    raise ValueError(f"unsafe entry in a shipped directory: {m.name}")
            tar.extractall(dest)  # noqa: S202 - members checked above


def place(s: Shipment, root: str | os.PathLike) -> str | None:
    """Where this node finds the directory: the driver's path when it holds the same files (a shared
    filesystem), else the shipped tar unpacked under `root`; None when it has neither."""
    if contents(s.path) == s.files:
        return s.path
    if s.blob is None:
        return None
    if isinstance(s.blob, (bytes, bytearray)):
        data = s.blob
    else:  # an ObjectRef: only ever on a node of a Ray cluster
        import ray

        data = ray.get(s.blob)
    dest = Path(root) / (Path(s.path).name or "dir")  # the same last name: a model keeps its short name
    unpack(bytes(data), dest)
    if contents(dest) != s.files:
        raise RuntimeError(f"the copy of {s.path} unpacked on this node differs from the driver's")
    return str(dest)
