"""`ingest()`: sources in, a dataset directory out, written whole or not at all."""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import itertools
import json
import os
import re
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TextIO

import yaml
from rich.progress import Progress

from mambapoc import __version__
from mambapoc.errors import UserError
from mambapoc.fsutil import replace_dir
from mambapoc.ingest import sources, staging
from mambapoc.ingest.dataset import MANIFEST, RECORDS, data_root, read_manifest
from mambapoc.ingest.declared import Declared, line_format
from mambapoc.ingest.detect import FORMATS
from mambapoc.ingest.event import Event
from mambapoc.ingest.induce import SAMPLE
from mambapoc.ingest.masking import KINDS, Masker, patterns_digest
from mambapoc.ingest.progress import ingest_progress
from mambapoc.ingest.readers import (
    DEFAULT_MAX_LINE_BYTES,
    InputFile,
    LineReader,
    Stream,
    collect_files,
    file_sha256,
    open_streams,
)
from mambapoc.ingest.stats import Stats
from mambapoc.ingest.templates import TemplateMiner

# Bumped when the records or the manifest change shape: a dataset built by another version is rebuilt
# rather than taken as up to date.
DATASET_FORMAT = 2
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_WRITE_BUFFER = 1 << 20


@dataclass
class IngestResult:
    """The dataset directory and its manifest (the existing one when nothing had to be done)."""

    path: Path
    manifest: dict
    # Why nothing was done (the dataset was already up to date), else None.
    skipped_reason: str | None = None

    @property
    def records(self) -> int:
        return self.manifest["counts"]["records"]


def default_name(paths: Sequence[str | os.PathLike]) -> str:
    """A dataset name from the inputs: the file or directory name for one input, else the name of the
    directory that holds them all."""
    resolved = [Path(p).resolve() for p in paths]
    if len(resolved) == 1:
        base = resolved[0].name.split(".")[0] or resolved[0].name
    else:
        base = Path(os.path.commonpath(resolved)).name
    return re.sub(r"[^A-Za-z0-9._-]+", "-", base).strip(".-") or "dataset"


class _Builder:
    """Reads every stream once, masks and mines each event, and writes records with a template id
    (pass 1); then rewrites them with each template's final text (pass 2), since a template can still
    generalise after a record that uses it was written."""

    def __init__(
        self,
        fmt: str,
        text_field: str | None,
        label_field: str | None,
        masker: Masker | None,
        max_line_bytes: int,
        declared_for: Callable[[InputFile], Declared | None],
    ):
        self.fmt = fmt
        self.declared_for = declared_for
        self.text_field = text_field
        self.label_field = label_field
        self.masker = masker
        self.max_line_bytes = max_line_bytes
        self.miner = TemplateMiner()
        self.stats = Stats()
        self.counts: Counter = Counter()
        self.sources: list[dict] = []
        self.skipped: list[dict] = []
        self._masked: dict[str, str] = {}

    def _record(self, rid: int, source: str, ev: Event) -> dict:
        text, message, component, fields = ev.prefix + ev.message + ev.suffix, ev.message, ev.component, ev.fields
        if self.masker is not None:
            text, message = self.masker.mask_event(ev.prefix, ev.message, ev.suffix)
            if component:
                component = self._mask_field(component)
            if fields:
                fields = {k: v if v.isdigit() and len(v) < 13 else self._mask_field(v) for k, v in fields.items()}
        return {
            "id": rid,
            "source": source,
            "line": ev.line,
            "timestamp": ev.timestamp,
            "level": ev.level,
            "level_raw": ev.level_raw,
            "component": component,
            "message": message,
            "template_id": self.miner.add(message) if ev.mine_template else None,
            "label": ev.label,
            "fields": fields,
            "text": text,
        }

    def _mask_field(self, value: str) -> str:
        # A component or header field (a host, a thread) is also part of the text, masked and counted there:
        # here it is only masked the same way. Their values repeat (loggers, hosts), so results are cached;
        # a number shorter than a card number needs no masking at all.
        masked = self._masked.get(value)
        if masked is None:
            if len(self._masked) >= 10_000:
                self._masked.clear()
            masked = self._masked[value] = self.masker.mask(value, count=False)
        return masked

    def read(self, files: Sequence[tuple[InputFile, str, int]], out: TextIO, progress: Progress) -> None:
        task = progress.add_task("Reading", total=sum(size for _, _, size in files), records=0)

        def advance(n: int) -> None:
            progress.update(task, advance=n, records=self.stats.records)

        for item, sha256, size in files:
            declared = self.declared_for(item)
            for stream in open_streams(item):
                self._read_stream(stream, declared, sha256, size, out, advance)
        advance(0)

    def _read_stream(
        self,
        stream: Stream,
        declared: Declared | None,
        sha256: str,
        size: int,
        out: TextIO,
        advance: Callable[[int], None],
    ) -> None:
        reader = LineReader(stream, self.counts, self.max_line_bytes, advance)
        if reader.is_binary():
            self.counts["skipped_binary_files"] += 1
            self.skipped.append({"path": stream.name, "reason": "binary"})
            return
        choice = sources.choice_for(stream, reader, self.fmt, declared)
        first = self.stats.records
        for ev in sources.events(choice, reader, stream, self.counts, self.text_field, self.label_field):
            record = self._record(self.stats.records, stream.name, ev)
            self.stats.add(record)
            tid = record.pop("template_id")
            out.write(f"{'' if tid is None else tid}\t{json.dumps(record, ensure_ascii=False)}\n")
        self.counts["lines"] += reader.lines
        source = {
            "path": stream.name,
            "format": choice.format,
            "confidence": choice.confidence,
            "records": self.stats.records - first,
            "lines": reader.lines,
            "compression": stream.compression,
            "bytes": size,
            "sha256": sha256,
        }
        if choice.layout:
            source["layout"] = choice.layout
        self.sources.append(source)

    def write(self, pass1: Path, target: Path, progress: Progress) -> None:
        # Templates that differ at one word only are joined now that all are known: records written with
        # either id get the joined one.
        final = self.miner.merge_variants()
        templates = {
            str(old): (str(new), json.dumps(self.miner.template(new), ensure_ascii=False))
            for old, new in final.items()
        }

        def with_template(line: str) -> str:
            tid, _, record = line.partition("\t")
            new, text = templates.get(tid, ("null", "null"))
            return f'{record[:-2]}, "template_id": {new}, "template": {text}}}\n'

        # Progress in characters of pass 1 read back: close enough to its size in bytes.
        task = progress.add_task("Writing", total=pass1.stat().st_size, records=0)
        written = 0
        with (
            open(pass1, encoding="utf-8") as f,
            open(target, "wb") as raw,
            gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=6, mtime=0) as gz,
        ):
            while batch := list(itertools.islice(f, 4096)):
                gz.write("".join(map(with_template, batch)).encode("utf-8"))
                written += len(batch)
                progress.update(task, advance=sum(map(len, batch)), records=written)

    def manifest(self) -> dict:
        top = sorted(self.miner.clusters, key=lambda c: -c.size)[:20]
        masking: dict = {"enabled": self.masker is not None}
        if self.masker is not None:
            masking["counts"] = {k: self.masker.counts[k] for k in KINDS if self.masker.counts[k]}
            masking["rules"] = self.masker.rules_run()
            masking["distinct"] = dict(sorted(self.masker.distinct.items()))
            masking["numbered_up_to"] = self.masker.max_distinct
        counts = {"records": self.stats.records, "lines": self.counts["lines"]}
        for key in (
            "skipped_binary_files",
            "truncated_lines",
            "decode_errors",
            "broken_lines",
            "unmatched_lines",
            "split_events",
            "joined_pieces",
        ):
            counts[key] = self.counts[key]
        return {
            "counts": counts,
            "masking": masking,
            "templates": {
                "count": len(self.miner.clusters),
                "capped": self.miner.capped,
                "unassigned": self.miner.unassigned,
                "top": [{"id": c.id, "count": c.size, "template": self.miner.template(c.id)} for c in top],
            },
            **self.stats.manifest(),
            "sources": self.sources,
            "skipped_files": self.skipped,
        }


def _fingerprint(files: list[tuple[InputFile, str, int]], options: dict, mask_regex: Sequence[str]) -> str:
    blob = json.dumps(
        {
            "dataset_format": DATASET_FORMAT,
            "version": __version__,
            "options": options,
            # Keyed with a salt kept out of the dataset: the stored fingerprint must not confirm a guess.
            "mask_regex": patterns_digest(mask_regex),
            "files": [[f.name, sha] for f, sha, _ in files],
        },
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()


def _up_to_date(target: Path, fingerprint: str) -> IngestResult:
    """The existing dataset, if it was built from the same sources with the same options; else an error,
    since replacing it needs --force."""
    existing = read_manifest(target)
    if existing.get("fingerprint") != fingerprint:
        raise UserError(
            f"dataset {target.name!r} already exists with other sources or options; "
            "pass --force to replace it or --name to make another"
        )
    return IngestResult(target, existing, "already ingested from the same sources with the same options")


def ingest(
    paths: Sequence[str | os.PathLike],
    name: str | None = None,
    data_dir: str | os.PathLike | None = None,
    fmt: str = "auto",
    text_field: str | None = None,
    label_field: str | None = None,
    mask: bool = True,
    mask_regex: Sequence[str] = (),
    mask_extra: Sequence[str] = (),
    force: bool = False,
    progress: bool = True,
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
    log_format: str | None = None,
    log_regex: str | None = None,
    path_formats: Mapping[str | os.PathLike, Declared] | None = None,
) -> IngestResult:
    """Ingests files, directories (recursively) and compressed files or zip and tar archives into
    `DATA_DIR/NAME/` (see docs/ingest.md). Sources are only read. The dataset is built in a hidden
    directory beside it and moved in place once complete. If a dataset of that name was built from the
    same sources with the same options, nothing is done unless `force`. `log_format` or `log_regex`
    declares the format of every input, `path_formats` that of the files under some of them."""
    if not paths:
        raise UserError("nothing to ingest: give at least one file or directory")
    if fmt != "auto" and fmt not in FORMATS:
        raise UserError(f"unknown format {fmt!r}; use auto or one of: {', '.join(FORMATS)}")
    declared = Declared(log_format, log_regex)  # checks the expressions before any work
    path_formats = dict(path_formats or {})
    if fmt != "auto" and (declared or path_formats):
        raise UserError("--format and --log-format or --log-regex exclude each other; give one")
    if max_line_bytes < 1:
        raise UserError("the line length limit must be at least 1 byte")
    name = name or default_name(paths)
    if not _NAME.fullmatch(name):
        raise UserError(f"invalid dataset name {name!r}: use letters, digits, '.', '_' and '-'")
    root = data_root(data_dir)
    masker = Masker(mask_regex, opt_in=mask_extra) if mask else None  # checks the options before any work
    files = collect_files(paths, exclude=root)
    if not files:
        raise UserError(f"no files found in {', '.join(map(str, paths))}")
    declared_for = _declared_for(declared, path_formats)
    _check_declared(files, declared_for, max_line_bytes)
    hashed = [(f, *file_sha256(f.path)) for f in files]
    options = {
        "format": fmt,
        "text_field": text_field,
        "label_field": label_field,
        "mask": mask,
        "mask_regex": len(mask_regex),
        "mask_extra": list(masker.opt_in) if masker else [],
        "max_line_bytes": max_line_bytes,
        "log_format": log_format,
        "log_regex": log_regex,
    }
    if path_formats:
        options["path_formats"] = {str(p): d.option() for p, d in path_formats.items()}
    fingerprint = _fingerprint(hashed, options, mask_regex)
    target = root / name
    if root.is_dir():
        staging.sweep(root)
    if target.exists() and not (target / MANIFEST).is_file():
        # Even with --force: replacing it would delete a directory this tool did not write.
        raise UserError(f"{target} exists and is not a dataset; choose another --name or move it away")
    if target.exists() and not force:
        return _up_to_date(target, fingerprint)

    created_root = not root.exists()
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"{root}: cannot create the data directory ({e.strerror or e})") from e
    builder = _Builder(fmt, text_field, label_field, masker, max_line_bytes, declared_for)
    head = {
        "name": name,
        "tool_version": __version__,
        "dataset_format": DATASET_FORMAT,
        "fingerprint": fingerprint,
        "inputs": [str(p) for p in paths],
        "options": options,
    }
    try:
        with staging.terminate_as_interrupt(), staging.staging_dir(root, name) as tmp:
            manifest = _build(tmp, builder, hashed, paths, progress, head)
            replace_dir(tmp, target)
    except BaseException:
        if created_root:
            with contextlib.suppress(OSError):
                root.rmdir()  # only if still empty
        raise
    return IngestResult(target, manifest)


def _declared_for(
    declared: Declared, path_formats: dict[str | os.PathLike, Declared]
) -> Callable[[InputFile], Declared | None]:
    """The declared format of an input file: that of the deepest path holding it, else the global one."""
    by_depth = sorted(((Path(p).resolve(), d) for p, d in path_formats.items()), key=lambda x: -len(x[0].parts))

    def declared_for(item: InputFile) -> Declared | None:
        for path, d in by_depth:
            if item.path == path or path in item.path.parents:
                return d
        return declared or None

    return declared_for


def _check_declared(
    files: list[InputFile], declared_for: Callable[[InputFile], Declared | None], max_line_bytes: int
) -> None:
    """A declared format that matches under half of a file's first lines is an error before anything is
    written or displayed."""
    for item in files:
        declared = declared_for(item)
        for stream in open_streams(item) if declared else ():
            reader = LineReader(stream, Counter(), max_line_bytes)
            if not reader.is_binary():
                line_format(declared, reader.sample(SAMPLE), stream.name)


def _build(
    tmp: Path,
    builder: _Builder,
    hashed: list[tuple[InputFile, str, int]],
    paths: Sequence[str | os.PathLike],
    progress: bool,
    head: dict,
) -> dict:
    """Builds the dataset in `tmp` (records in two passes, then the manifest); returns the manifest."""
    pass1 = tmp / "records.pass1"
    with ingest_progress(progress) as bar:
        with open(pass1, "w", encoding="utf-8", buffering=_WRITE_BUFFER) as out:
            builder.read(hashed, out, bar)
        if builder.stats.records == 0:
            raise UserError(_empty_message(paths, builder))
        builder.write(pass1, tmp / RECORDS, bar)
    pass1.unlink()
    created = datetime.now(timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")
    records_bytes = (tmp / RECORDS).stat().st_size
    manifest = {"name": head["name"], "created": created, **head, "records_bytes": records_bytes, **builder.manifest()}
    with open(tmp / MANIFEST, "w", encoding="utf-8") as f:
        yaml.safe_dump(manifest, f, sort_keys=False, allow_unicode=True)
    return manifest


def _empty_message(paths: Sequence[str | os.PathLike], builder: _Builder) -> str:
    binary = builder.counts["skipped_binary_files"]
    why = f" ({binary} binary file{'s' * (binary != 1)} skipped)" if binary else ""
    return f"no records found in {', '.join(map(str, paths))}{why}: the files are empty or hold no text"
