"""Building a dataset: inputs of every shape, bad input, atomic writes, re-ingest, the records written."""

from __future__ import annotations

import bz2
import gzip
import hashlib
import lzma
import os
import zipfile
from pathlib import Path

import pytest
import yaml

from mambapoc.errors import UserError
from mambapoc.ingest import build, ingest
from mambapoc.ingest.dataset import (
    default_data_dir,
    iter_records,
    list_datasets,
    load_records,
    read_manifest,
    resolve_dataset,
)
from mambapoc.ingest.templates import TemplateMiner

LOG4J = (
    "2024-03-12 14:05:01,118 INFO  [exec-1] com.acme.Api: request 7f3a9c01b2d4 served by node alpha\n"
    "2024-03-12 14:05:02,118 INFO  [exec-2] com.acme.Api: request 9a0b1c2d3e4f served by node beta\n"
    "2024-03-12 14:05:03,500 ERROR [exec-3] com.acme.Api: request 0a1b2c3d4e5f failed: pool exhausted\n"
    "java.sql.SQLTransientConnectionException: Connection is not available\n"
    "\tat com.zaxxer.hikari.pool.HikariPool.getConnection(HikariPool.java:179)\n"
)


def _run(paths, tmp_path, **kw):
    kw.setdefault("data_dir", tmp_path / "data")
    return ingest([str(p) for p in paths], progress=False, **kw)


def _leftovers(data_dir: Path) -> list[str]:
    return sorted(p.name for p in data_dir.iterdir()) if data_dir.exists() else []


def test_records_have_every_field_and_final_templates(tmp_path):
    (tmp_path / "app.log").write_text(LOG4J)
    result = _run([tmp_path / "app.log"], tmp_path)
    records = load_records(result.path)
    assert [r["id"] for r in records] == [0, 1, 2]
    assert set(records[0]) == {
        "id",
        "source",
        "line",
        "timestamp",
        "level",
        "level_raw",
        "component",
        "message",
        "template_id",
        "template",
        "label",
        "fields",
        "text",
    }
    assert records[2]["line"] == 3 and records[2]["level"] == "ERROR"
    assert records[2]["message"].endswith("HikariPool.java:179)")
    # The first record was written before its template generalised; it carries the final text all the same.
    assert records[0]["template_id"] == records[1]["template_id"] != records[2]["template_id"]
    assert records[0]["template"] == records[1]["template"] == "request <*> served by node <*>"
    assert records[2]["template"] == "request <*> failed: pool exhausted"
    assert load_records(result.path, limit=1) == records[:1]
    m = read_manifest(result.path)
    assert m["counts"]["records"] == 3 and m["counts"]["lines"] == 5
    assert (
        m["sources"][0]["format"] == "log4j"
        and m["sources"][0]["sha256"] == hashlib.sha256(LOG4J.encode()).hexdigest()
    )
    assert m["levels"] == {"INFO": 2, "ERROR": 1}
    assert m["fields"]["timestamp"] == 1.0 and m["fields"]["label"] == 0.0
    assert m["templates"]["count"] == 2 and m["templates"]["top"][0]["count"] == 2


def test_compressed_inputs_and_zip_members(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.log.gz").write_bytes(gzip.compress(LOG4J.encode()))
    (src / "b.log.1.bz2").write_bytes(bz2.compress(LOG4J.encode()))
    (src / "c.log.xz").write_bytes(lzma.compress(LOG4J.encode()))
    with zipfile.ZipFile(src / "d.zip", "w") as zf:
        zf.writestr("x/app.log", LOG4J)
        zf.writestr("events.jsonl", '{"message": "hello", "level": "info"}\n')
    (src / ".hidden.log").write_text(LOG4J)
    result = _run([src], tmp_path)
    got = {s["path"]: (s["format"], s["compression"], s["records"]) for s in result.manifest["sources"]}
    assert got == {
        "src/a.log.gz": ("log4j", "gzip", 3),
        "src/b.log.1.bz2": ("log4j", "bz2", 3),
        "src/c.log.xz": ("log4j", "xz", 3),
        "src/d.zip!/x/app.log": ("log4j", "zip", 3),
        "src/d.zip!/events.jsonl": ("jsonl", "zip", 1),
    }


def test_syslog_year_comes_from_the_gzip_header(tmp_path):
    data = b"Dec 31 23:59:59 host sshd[1]: old\nJan  1 00:00:01 host sshd[1]: new\n"
    path = tmp_path / "auth.log.1.gz"
    with open(path, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=1704103200) as gz:
        gz.write(data)  # mtime: 2024-01-01 10:00 UTC
    records = load_records(_run([path], tmp_path).path)
    assert [r["timestamp"] for r in records] == ["2023-12-31T23:59:59", "2024-01-01T00:00:01"]


def test_binary_files_are_skipped_and_counted(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "app.log").write_text(LOG4J)
    (src / "core.dump").write_bytes(bytes(range(256)) * 40)
    result = _run([src], tmp_path)
    assert result.manifest["counts"]["skipped_binary_files"] == 1
    assert result.manifest["skipped_files"] == [{"path": "src/core.dump", "reason": "binary"}]
    assert result.records == 3


def test_encodings_crlf_bom_and_long_lines(tmp_path):
    path = tmp_path / "mixed.log"
    path.write_bytes(
        b"\xef\xbb\xbf2024-03-12 14:05:01,118 INFO [m] a.B: caf\xc3\xa9 ok\r\n"
        b"2024-03-12 14:05:02,118 WARN [m] a.B: sauvegarde termin\xe9e\r\n"
        b"2024-03-12 14:05:03,118 INFO [m] a.B: " + b"x" * 5000 + b"\r\n"
        b"2024-03-12 14:05:04,118 INFO [m] a.B: after\r\n"
    )
    result = _run([path], tmp_path, max_line_bytes=200)
    records = load_records(result.path)
    counts = result.manifest["counts"]
    assert (counts["decode_errors"], counts["truncated_lines"]) == (1, 1)
    assert records[0]["message"] == "café ok" and records[0]["timestamp"] == "2024-03-12T14:05:01.118"
    assert records[1]["message"] == "sauvegarde termin\ufffde"
    assert len(records[2]["text"].encode()) == 200
    assert records[3]["message"] == "after" and not any("\r" in r["text"] for r in records)


def test_a_line_longer_than_a_read_chunk_is_cut_and_skipped_to_its_end(tmp_path):
    path = tmp_path / "big.log"
    with open(path, "wb") as f:
        f.write(b"first\n" + b"y" * (3 * 1024 * 1024) + b"\nlast\n")
    result = _run([path], tmp_path)
    texts = [r["text"] for r in load_records(result.path)]
    assert texts[0] == "first" and texts[2] == "last" and len(texts[1]) == 64 * 1024
    assert result.manifest["counts"]["truncated_lines"] == 1


def test_broken_json_lines_are_kept_and_counted(tmp_path):
    path = tmp_path / "events.jsonl"
    path.write_text('{"message": "a", "level": "info"}\n{"message": "b", "lev\n{"message": "c"}\n')
    result = _run([path], tmp_path)
    assert [r["message"] for r in load_records(result.path)] == ["a", '{"message": "b", "lev', "c"]
    assert result.manifest["counts"]["broken_lines"] == 1


def test_format_override_and_csv_fields(tmp_path):
    path = tmp_path / "export.txt"
    path.write_text("id,summary,kind\n1,disk full on dn-7,disk\n2,ssh brute force,security\n")
    result = _run([path], tmp_path, fmt="csv", text_field="summary", label_field="kind")
    assert result.manifest["sources"][0]["format"] == "csv"
    assert [(r["text"], r["label"]) for r in load_records(result.path)] == [
        ("disk full on dn-7", "disk"),
        ("ssh brute force", "security"),
    ]
    assert result.manifest["labels"] == {"disk": 1, "security": 1}
    with pytest.raises(UserError, match="unknown format 'xml'"):
        _run([path], tmp_path, fmt="xml", name="other")


def test_missing_path_writes_nothing(tmp_path):
    (tmp_path / "app.log").write_text(LOG4J)
    with pytest.raises(UserError, match="nope.log: no such file or directory"):
        _run([tmp_path / "app.log", tmp_path / "nope.log"], tmp_path)
    assert not (tmp_path / "data").exists()


@pytest.mark.parametrize("content", [b"", b"\n\n  \n"])
def test_empty_input_is_an_error_and_writes_nothing(tmp_path, content):
    (tmp_path / "empty.log").write_bytes(content)
    with pytest.raises(UserError, match="no records found"):
        _run([tmp_path / "empty.log"], tmp_path)
    assert not (tmp_path / "data").exists()


def test_empty_directory_and_corrupt_archive_are_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no files found"):
        _run([tmp_path / "empty"], tmp_path)
    (tmp_path / "bad.log.gz").write_bytes(gzip.compress(LOG4J.encode())[:40])
    with pytest.raises(UserError, match="bad.log.gz: cannot be read"):
        _run([tmp_path / "bad.log.gz"], tmp_path)
    assert not (tmp_path / "data").exists()


def test_sources_are_never_modified(tmp_path):
    path = tmp_path / "app.log"
    path.write_text(LOG4J)
    os.utime(path, (1_600_000_000, 1_600_000_000))
    before = (path.read_bytes(), path.stat().st_mtime)
    _run([path], tmp_path)
    assert (path.read_bytes(), path.stat().st_mtime) == before


def test_an_interrupted_ingest_leaves_nothing_and_keeps_the_previous_dataset(tmp_path, monkeypatch):
    (tmp_path / "app.log").write_text(LOG4J)
    first = _run([tmp_path / "app.log"], tmp_path)
    before = first.path.joinpath("records.jsonl.gz").read_bytes()

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(build._Builder, "write", interrupted)
    with pytest.raises(KeyboardInterrupt):
        _run([tmp_path / "app.log"], tmp_path, force=True)
    assert _leftovers(tmp_path / "data") == ["app"]
    assert first.path.joinpath("records.jsonl.gz").read_bytes() == before
    with pytest.raises(KeyboardInterrupt):
        _run([tmp_path / "app.log"], tmp_path / "fresh")
    assert not (tmp_path / "fresh" / "data").exists()


def test_reingest_is_a_no_op_unless_forced_or_changed(tmp_path):
    path = tmp_path / "app.log"
    path.write_text(LOG4J)
    first = _run([path], tmp_path)
    again = _run([path], tmp_path)
    assert again.skipped_reason and again.manifest["created"] == first.manifest["created"]
    forced = _run([path], tmp_path, force=True)
    assert forced.skipped_reason is None and forced.records == 3
    path.write_text(LOG4J + LOG4J)
    with pytest.raises(UserError, match="already exists with other sources or options; pass --force"):
        _run([path], tmp_path)
    with pytest.raises(UserError, match="already exists with other sources or options"):
        _run([tmp_path / "app.log"], tmp_path, mask=False)
    assert _run([path], tmp_path, force=True).records == 6
    assert _leftovers(tmp_path / "data") == ["app"]
    (tmp_path / "data" / "mine").mkdir()
    (tmp_path / "data" / "mine" / "notes.txt").write_text("not a dataset")
    with pytest.raises(UserError, match="exists and is not a dataset"):
        _run([path], tmp_path, name="mine", force=True)
    assert (tmp_path / "data" / "mine" / "notes.txt").exists()


def test_names_sources_and_the_data_dir_inside_an_input(tmp_path, monkeypatch):
    root = tmp_path / "project"
    (root / "logs").mkdir(parents=True)
    (root / "docs").mkdir()
    (root / "logs" / "app.log").write_text(LOG4J)
    (root / "docs" / "runbook.md").write_text("# Runbook\n\nRestart it.\n")
    monkeypatch.chdir(root)
    result = ingest(["logs", "docs"], progress=False)
    assert result.path == Path("data") / "project"
    assert [s["path"] for s in result.manifest["sources"]] == ["logs/app.log", "docs/runbook.md"]
    assert result.manifest["inputs"] == ["logs", "docs"]
    # A dataset directory inside the input is not read back as input.
    again = ingest(["."], name="all", progress=False)
    assert all(not s["path"].startswith("project/data") for s in again.manifest["sources"])
    with pytest.raises(UserError, match="invalid dataset name"):
        ingest(["logs"], name="../x", progress=False)


def test_dataset_lookup(tmp_path, monkeypatch):
    (tmp_path / "app.log").write_text(LOG4J)
    monkeypatch.setenv("MAMBAPOC_DATA_DIR", str(tmp_path / "store"))
    assert default_data_dir() == tmp_path / "store"
    result = ingest([tmp_path / "app.log"], name="one", progress=False)
    assert result.path == tmp_path / "store" / "one"
    assert resolve_dataset("one") == result.path
    assert resolve_dataset(str(result.path)) == result.path
    assert list_datasets() == [result.path]
    with pytest.raises(UserError, match="dataset 'two' not found in .*available: one"):
        resolve_dataset("two")
    assert next(iter_records(result.path))["id"] == 0
    assert yaml.safe_load((result.path / "manifest.yaml").read_text())["name"] == "one"


def test_template_miner_generalises_and_stays_bounded():
    miner = TemplateMiner(max_clusters=2)
    a = miner.add("Received block blk_1 of size 67108864 from /10.0.0.1")
    b = miner.add("Received block blk_2 of size 1024 from /10.0.0.2")
    c = miner.add("Deleting block blk_3 file /data/current/blk_3")
    d = miner.add("user admin logged in")  # a third shape: no room left
    assert a == b and c != a and d is None
    assert miner.template(a) == "Received block <*> of size <*> from <*>"
    assert miner.unassigned == 1 and miner.capped
    assert miner.add("Received block blk_9 of size 1 from /10.0.0.9") == a  # known shapes still match
    assert miner.add("") is None
