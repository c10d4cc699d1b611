"""Finding the input files, opening them (plain or compressed) and reading them as bounded lines."""

from __future__ import annotations

import bz2
import gzip
import hashlib
import lzma
import os
import zipfile
import zlib
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import BinaryIO

from mambapoc.errors import UserError

CHUNK = 1 << 20
DEFAULT_MAX_LINE_BYTES = 64 * 1024
_BOM = b"\xef\xbb\xbf"
# Magic numbers rather than file names decide the compression: rotated logs are often named
# `app.log.1` whatever their content, and `.gz` files are sometimes plain text.
_GZIP_MAGIC = b"\x1f\x8b"
_COMPRESSIONS = (
    (b"BZh", "bz2", bz2.BZ2File),
    (b"\xfd7zXZ\x00", "xz", lzma.LZMAFile),
)
_ZIP_MAGIC = b"PK\x03\x04"
# What a corrupt compressed file or archive raises while it is read.
_READ_ERRORS = (OSError, EOFError, RuntimeError, zlib.error, lzma.LZMAError, zipfile.BadZipFile)


def _unreadable(name: str, e: Exception) -> UserError:
    return UserError(f"{name}: cannot be read ({e})")


@dataclass(frozen=True)
class InputFile:
    """A file on disk and its name in the dataset: relative to the common parent of the inputs, so
    that names stay unique and no absolute path of this machine ends up in the dataset."""

    path: Path
    name: str


@dataclass
class Stream:
    """One logical text source: a file, or a member of a zip archive."""

    name: str
    compression: str | None
    fileobj: BinaryIO
    modified: date
    # The file being read on disk, whose position measures progress in on-disk bytes.
    disk: BinaryIO


def collect_files(paths: Sequence[str | os.PathLike], exclude: Path | None = None) -> list[InputFile]:
    """Every file under `paths` (directories recursively, hidden entries and `exclude` skipped), in a
    stable order. A missing or unreadable path is a `UserError`, raised before anything is written."""
    resolved = []
    for p in paths:
        path = Path(p)
        if not path.exists():
            raise UserError(f"{p}: no such file or directory")
        if not os.access(path, os.R_OK):
            raise UserError(f"{p}: permission denied")
        resolved.append(path.resolve())
    base = Path(os.path.commonpath([p.parent for p in resolved]))
    excluded = exclude.resolve() if exclude is not None else None
    seen: set[Path] = set()
    files = []
    for path in resolved:
        for f in _walk(path, excluded):
            if f not in seen:
                seen.add(f)
                files.append(InputFile(f, f.relative_to(base).as_posix()))
    return files


def _walk(path: Path, excluded: Path | None) -> Iterator[Path]:
    if path.is_file():
        yield path
        return
    for root, dirs, names in os.walk(path):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and Path(root, d) != excluded)
        for n in sorted(names):
            # Only regular files: a FIFO or a device would block the read or never end.
            if not n.startswith(".") and Path(root, n).is_file():
                yield Path(root, n)


def file_sha256(path: Path) -> tuple[str, int]:
    """sha256 and size of a file; an unreadable file is a `UserError`."""
    h = hashlib.sha256()
    size = 0
    try:
        with open(path, "rb") as f:
            while block := f.read(CHUNK):
                h.update(block)
                size += len(block)
    except OSError as e:
        raise UserError(f"{path}: cannot read ({e.strerror or e})") from e
    return h.hexdigest(), size


def _decompressed(f: BinaryIO, modified: date) -> tuple[BinaryIO, str | None, date]:
    """The decompressed stream, its compression, and its modification date: a gzip header records the
    original file's (RFC 3164 syslog needs it for the year), otherwise the container's is kept."""
    head = f.peek(8)[:8]
    if head.startswith(_GZIP_MAGIC):
        gz = gzip.GzipFile(fileobj=f)
        gz.peek(1)  # reads the header
        return gz, "gzip", date.fromtimestamp(gz.mtime) if gz.mtime else modified
    for magic, name, opener in _COMPRESSIONS:
        if head.startswith(magic):
            return opener(f), name, modified
    return f, None, modified


def open_streams(item: InputFile) -> Iterator[Stream]:
    """The text streams of one input file: itself, decompressed, or each member of a zip."""
    try:
        with open(item.path, "rb") as disk:
            modified = date.fromtimestamp(os.fstat(disk.fileno()).st_mtime)
            if disk.peek(4)[:4] == _ZIP_MAGIC:
                with zipfile.ZipFile(disk) as zf:
                    for info in zf.infolist():
                        if info.is_dir() or Path(info.filename).name.startswith("."):
                            continue
                        with zf.open(info) as member:
                            fileobj, compression, when = _decompressed(
                                member, datetime(*info.date_time).date()
                            )
                            yield Stream(
                                f"{item.name}!/{info.filename}", compression or "zip", fileobj, when, disk
                            )
            else:
                fileobj, compression, when = _decompressed(disk, modified)
                yield Stream(item.name, compression, fileobj, when, disk)
    except _READ_ERRORS as e:
        # Only this generator's own work lands here (opening, archive and compression headers); an error
        # of the code consuming a stream is not raised inside the generator.
        raise _unreadable(item.name, e) from e


class LineReader:
    """Lines of a byte stream as `str`, with bounded memory whatever the input: lines longer than
    `max_line_bytes` are cut (the rest skipped) and counted, invalid UTF-8 is decoded with
    replacement characters and counted, CRLF and a leading BOM are removed."""

    def __init__(
        self,
        stream: Stream,
        counts: Counter,
        max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
        on_progress: Callable[[int], None] | None = None,
    ):
        self._stream = stream
        self._counts = counts
        self._limit = max_line_bytes
        self._on_progress = on_progress
        self._disk_pos = stream.disk.tell()
        self.lines = 0
        self._first = self._read()
        if self._first.startswith(_BOM):
            self._first = self._first[len(_BOM) :]

    def _read(self) -> bytes:
        try:
            return self._stream.fileobj.read(CHUNK)
        except _READ_ERRORS as e:
            raise _unreadable(self._stream.name, e) from e

    def is_binary(self) -> bool:
        """NUL bytes or many control characters near the start: not a text file."""
        head = self._first[:8192]
        if b"\x00" in head:
            return True
        controls = sum(head.count(bytes([c])) for c in (*range(1, 9), *range(14, 27), *range(28, 32)))
        return controls > len(head) * 0.1

    def sample(self, n: int = 200) -> list[str]:
        """Up to `n` lines from the start, for format detection; nothing is counted."""
        lines = self._first[: 256 * 1024].split(b"\n")
        if len(lines) > 1 and len(self._first) > 256 * 1024:
            lines.pop()  # cut mid-line by the slice
        return [ln.rstrip(b"\r").decode("utf-8", "replace") for ln in lines[:n]]

    def _decode(self, raw: bytes) -> str:
        if len(raw) > self._limit:
            self._counts["truncated_lines"] += 1
            cut = self._limit
            # Back off to a character boundary rather than leave half a UTF-8 sequence.
            while cut > self._limit - 3 and raw[cut] & 0xC0 == 0x80:
                cut -= 1
            raw = raw[:cut]
        elif raw.endswith(b"\r"):
            raw = raw[:-1]
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            self._counts["decode_errors"] += 1
            return raw.decode("utf-8", "replace")

    def _report_progress(self) -> None:
        if self._on_progress is not None:
            pos = self._stream.disk.tell()
            self._on_progress(pos - self._disk_pos)
            self._disk_pos = pos

    def __iter__(self) -> Iterator[str]:
        pending = b""
        skipping = False  # inside an over-long line whose first `limit` bytes were already yielded
        chunk = self._first
        while chunk:
            lines = (pending + chunk).split(b"\n")
            pending = lines.pop()
            self.lines += len(lines)
            for raw in lines:
                if skipping:
                    skipping = False
                    continue
                yield self._decode(raw)
            if len(pending) > self._limit:
                if not skipping:
                    yield self._decode(pending)
                    skipping = True
                pending = b""
            self._report_progress()
            chunk = self._read()
        if pending and not skipping:
            self.lines += 1
            yield self._decode(pending)
