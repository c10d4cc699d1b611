"""Finding the input files, opening them (plain or compressed) and reading them as bounded lines."""

from __future__ import annotations

import bz2
import codecs
import gzip
import hashlib
import lzma
import os
import tarfile
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
# A tar header's magic, 257 bytes into the archive (and into each member's header).
_TAR_MAGIC = (257, b"ustar")
# Byte order marks of the encodings other than UTF-8 that Windows tools write (UTF-32 first: its
# little-endian mark starts like UTF-16's).
_BOMS = (
    (b"\xff\xfe\x00\x00", "utf-32-le"),
    (b"\x00\x00\xfe\xff", "utf-32-be"),
    (b"\xff\xfe", "utf-16-le"),
    (b"\xfe\xff", "utf-16-be"),
)
# What a corrupt compressed file or archive raises while it is read.
_READ_ERRORS = (OSError, EOFError, RuntimeError, zlib.error, lzma.LZMAError, zipfile.BadZipFile, tarfile.TarError)


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


def _is_tar(f: BinaryIO) -> bool:
    at, magic = _TAR_MAGIC
    return f.peek(at + len(magic))[at : at + len(magic)] == magic


def _zip_members(item: InputFile, disk: BinaryIO) -> Iterator[Stream]:
    with zipfile.ZipFile(disk) as zf:
        for info in zf.infolist():
            if info.is_dir() or Path(info.filename).name.startswith("."):
                continue
            with zf.open(info) as member:
                fileobj, compression, when = _decompressed(member, datetime(*info.date_time).date())
                yield Stream(f"{item.name}!/{info.filename}", compression or "zip", fileobj, when, disk)


def _tar_members(item: InputFile, archive: BinaryIO, outer: str | None, disk: BinaryIO) -> Iterator[Stream]:
    # Stream mode: members are read in order, without seeking, so a compressed tar needs no temporary file.
    container = f"tar.{outer}" if outer else "tar"
    with tarfile.open(fileobj=archive, mode="r|") as tf:
        for info in tf:
            if not info.isfile() or Path(info.name).name.startswith("."):
                continue
            member = tf.extractfile(info)
            fileobj, compression, when = _decompressed(member, date.fromtimestamp(info.mtime))
            yield Stream(f"{item.name}!/{info.name}", compression or container, fileobj, when, disk)


def open_streams(item: InputFile) -> Iterator[Stream]:
    """The text streams of one input file: itself, decompressed, or each member of a zip or tar archive
    (compressed or not)."""
    try:
        with open(item.path, "rb") as disk:
            modified = date.fromtimestamp(os.fstat(disk.fileno()).st_mtime)
            if disk.peek(4)[:4] == _ZIP_MAGIC:
                yield from _zip_members(item, disk)
                return
            fileobj, compression, when = _decompressed(disk, modified)
            if _is_tar(fileobj):
                yield from _tar_members(item, fileobj, compression, disk)
            else:
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
        self._limit = self.max_line_bytes = max_line_bytes
        self._on_progress = on_progress
        self._disk_pos = stream.disk.tell()
        self.lines = 0
        self._recode: codecs.IncrementalDecoder | None = None
        self._first = self._read()
        for bom, encoding in _BOMS:
            if self._first.startswith(bom):
                # UTF-16 and UTF-32 are read as UTF-8 from here on: every reader after this one sees one encoding.
                self._recode = codecs.getincrementaldecoder(encoding)("replace")
                self._first = self._recoded(self._first[len(bom) :])
                break
        if self._first.startswith(_BOM):
            self._first = self._first[len(_BOM) :]

    def _read_raw(self) -> bytes:
        try:
            return self._stream.fileobj.read(CHUNK)
        except _READ_ERRORS as e:
            raise _unreadable(self._stream.name, e) from e

    def _recoded(self, raw: bytes) -> bytes:
        # A chunk that ends inside a character gives nothing yet: read on until there is text or no more.
        while True:
            text = self._recode.decode(raw, final=not raw)
            if text or not raw:
                return text.encode("utf-8")
            raw = self._read_raw()

    def _read(self) -> bytes:
        raw = self._read_raw()
        return raw if self._recode is None else self._recoded(raw)

    def is_binary(self) -> bool:
        """NUL bytes or many control characters near the start: not a text file."""
        head = self._first[:8192]
        if b"\x00" in head:
            return True
        controls = sum(head.count(bytes([c])) for c in (*range(1, 9), *range(14, 27), *range(28, 32)))
        return controls > len(head) * 0.1

    def sample(self, n: int = 200) -> list[str]:
        """Up to `n` lines from the start (from the first chunk read, 1 MiB), for format detection and
        header induction; nothing is counted."""
        parts = self._first.split(b"\n", n)
        # The last part is the rest of the chunk: a whole line only if the stream ends there.
        lines = parts[:-1] if len(parts) > n or len(self._first) >= CHUNK else parts
        return [ln[: self._limit].rstrip(b"\r").decode("utf-8", "replace") for ln in lines]

    def text(self) -> Iterator[str]:
        """The whole stream as text in chunks, for readers of documents whose lines can be of any length
        (a JSON document on one line); lines are counted, nothing is cut."""
        decoder = codecs.getincrementaldecoder("utf-8")("replace")
        chunk = self._first
        ends_line = True
        while chunk:
            self.lines += chunk.count(b"\n")
            ends_line = chunk.endswith(b"\n")
            yield decoder.decode(chunk)
            self._report_progress()
            chunk = self._read()
        self.lines += not ends_line
        yield decoder.decode(b"", final=True)

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
