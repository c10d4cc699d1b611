"""Bad input and bad luck: other encodings, a data directory that is a file, an ingest killed half-way,
datasets whose files were damaged, and sources that must stay as they were."""

from __future__ import annotations

import gzip
import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mambapoc.ingest import ingest, staging
from mambapoc.ingest.dataset import load_records

LOG4J = "2024-03-12 14:05:01,118 WARN [main] relay.Pool: caf\u00e9 queue at 812\n"
REPO = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("encoding", ["utf-16-le", "utf-16-be", "utf-32-le", "utf-32-be"])
def test_utf16_and_utf32_with_a_byte_order_mark_are_decoded(tmp_path, encoding):
    path = tmp_path / "relay.log"
    path.write_bytes("\ufeff".encode(encoding) + (LOG4J * 3).encode(encoding))
    result = ingest([path], data_dir=tmp_path / "data", progress=False)
    assert result.manifest["counts"]["skipped_binary_files"] == 0
    assert result.manifest["sources"][0]["format"] == "log4j"
    records = load_records(result.path)
    assert len(records) == 3 and records[0]["message"] == "caf\u00e9 queue at 812"
    assert records[0]["level"] == "WARN" and result.manifest["counts"]["decode_errors"] == 0


def test_a_data_dir_that_is_a_file_is_a_one_line_error(tmp_path, cli):
    (tmp_path / "relay.log").write_text(LOG4J)
    (tmp_path / "data").write_text("not a folder")
    for argv in (
        ("ingest", str(tmp_path / "relay.log")),
        ("datasets",),
        ("datasets", "show", "relay"),
    ):
        code, _, err = cli(*argv, "--data-dir", str(tmp_path / "data"))
        assert code == 1 and err.count("\n") == 1, argv
        assert "data is a file, not a data directory" in err
    assert (tmp_path / "data").read_text() == "not a folder"


def _big_log(path: Path, megabytes: int = 12) -> None:
    line = "2024-03-12 14:05:01,118 INFO [main] relay.Pool: request {} served by node-{} in {} ms\n"
    with open(path, "w") as f:
        for i in range(megabytes * 12_000):
            f.write(line.format(i, i % 97, i % 3000))


def _start_ingest(src: Path, data: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "mambapoc", "ingest", str(src), "--data-dir", str(data), "--force"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def _wait_for_staging(data: Path, proc: subprocess.Popen) -> Path:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        found = [p for p in data.glob(".relay.*.tmp") if (p / "records.pass1").is_file()]
        if found and found[0].joinpath("records.pass1").stat().st_size > 0:
            return found[0]
        time.sleep(0.02)
    pytest.fail("the ingest never started writing")


@pytest.fixture
def existing(tmp_path):
    """A source, and a dataset built from it earlier: (source, data dir, its records' bytes)."""
    src = tmp_path / "relay.log"
    src.write_text(LOG4J * 5)
    data = tmp_path / "data"
    result = ingest([src], data_dir=data, progress=False)
    _big_log(src)
    return src, data, (result.path / "records.jsonl.gz").read_bytes()


def test_sigterm_cleans_up_like_ctrl_c_and_keeps_the_previous_dataset(existing):
    src, data, before = existing
    proc = _start_ingest(src, data)
    _wait_for_staging(data, proc)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "Traceback" not in err and "interrupted" in err
    assert sorted(p.name for p in data.iterdir()) == ["relay"]
    assert (data / "relay" / "records.jsonl.gz").read_bytes() == before


def test_what_a_killed_ingest_left_is_swept_by_the_next_one(existing, tmp_path):
    src, data, before = existing
    proc = _start_ingest(src, data)
    left = _wait_for_staging(data, proc)
    proc.kill()
    proc.wait(timeout=60)
    assert left.exists() and f".relay.{proc.pid}." in left.name  # the owner's pid is in the name
    (tmp_path / "other.log").write_text(LOG4J)
    ingest([tmp_path / "other.log"], data_dir=data, progress=False)
    assert sorted(p.name for p in data.iterdir()) == ["other", "relay"]
    assert (data / "relay" / "records.jsonl.gz").read_bytes() == before


def test_a_folder_its_owner_still_holds_is_left_alone_and_a_moved_aside_dataset_comes_back(tmp_path):
    data = tmp_path / "data"
    (tmp_path / "relay.log").write_text(LOG4J)
    ingest([tmp_path / "relay.log"], data_dir=data, progress=False)
    busy = data / ".other.4242.abcdefgh.tmp"
    busy.mkdir()
    (busy / "records.pass1").write_text("{}\n")
    held = staging._lock(busy)
    # Killed between moving the old dataset aside and moving the new one in: the old one comes back.
    os.replace(data / "relay", tmp_path / "relay")
    aside = data / ".relay.zyxwvuts.old"
    aside.mkdir()
    os.replace(tmp_path / "relay", aside / "relay")
    # Killed while deleting a moved-aside copy of a dataset that was replaced: it goes.
    (data / ".relay.qrstuvwx.old" / "relay").mkdir(parents=True)
    try:
        assert staging.sweep(data) == [".relay.qrstuvwx.old", ".relay.zyxwvuts.old"]
    finally:
        os.close(held)
    assert sorted(p.name for p in data.iterdir()) == [".other.4242.abcdefgh.tmp", "relay"]
    assert len(load_records(data / "relay")) == 1
    assert staging.sweep(data) == [".other.4242.abcdefgh.tmp"]


@pytest.mark.parametrize(
    "damage, what",
    [
        (lambda ds: (ds / "manifest.yaml").write_text("name: [unclosed\n"), "manifest.yaml: unreadable or corrupt"),
        (lambda ds: (ds / "manifest.yaml").write_text("name: relay\ncreated: x\n"), "incomplete or corrupt manifest"),
        (lambda ds: (ds / "manifest.yaml").write_text("- a list\n"), "manifest.yaml: incomplete or corrupt"),
        (lambda ds: (ds / "manifest.yaml").write_bytes(b"\xff\xfe\x00garbage"), "manifest.yaml: unreadable"),
    ],
)
def test_a_damaged_manifest_is_a_one_line_error_naming_it(tmp_path, cli, damage, what):
    (tmp_path / "relay.log").write_text(LOG4J)
    result = ingest([tmp_path / "relay.log"], data_dir=tmp_path / "data", progress=False)
    damage(result.path)
    for argv in (("datasets",), ("datasets", "show", "relay")):
        code, _, err = cli(*argv, "--data-dir", str(tmp_path / "data"))
        assert code == 1 and err.count("\n") == 1 and what in err, (argv, err)
        assert str(result.path / "manifest.yaml") in err


def test_a_truncated_records_file_is_a_one_line_error_naming_it(tmp_path, cli):
    (tmp_path / "relay.log").write_text(LOG4J * 2000)
    result = ingest([tmp_path / "relay.log"], data_dir=tmp_path / "data", progress=False)
    records = result.path / "records.jsonl.gz"
    records.write_bytes(records.read_bytes()[: records.stat().st_size // 2])
    code, _, err = cli("datasets", "show", "relay", "--data-dir", str(tmp_path / "data"))
    assert code == 1 and err.count("\n") == 1
    assert f"{records}: truncated or corrupt records file" in err
    records.write_bytes(gzip.compress(b'{"id": 0, "source"\n'))
    code, _, err = cli("datasets", "show", "relay", "--data-dir", str(tmp_path / "data"))
    assert code == 1 and "truncated or corrupt records file" in err


def test_sources_are_never_modified_whatever_their_kind(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "utf16.log").write_bytes("\ufeff".encode("utf-16-le") + LOG4J.encode("utf-16-le"))
    (src / "doc.json").write_text('{"Records": [{"eventName": "Get"}]}')
    (src / "app.log.gz").write_bytes(gzip.compress(LOG4J.encode()))
    (src / "plain.txt").write_text("just prose\n")
    before = {p: (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns) for p in src.iterdir()}
    ingest([src], data_dir=tmp_path / "data", progress=False)
    assert {p: (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns) for p in src.iterdir()} == before


def test_json_nested_past_the_stack_is_a_broken_line_not_a_crash(tmp_path):
    (tmp_path / "events.jsonl").write_text('{"message": "ok"}\n{"a": ' + "[" * 100_000 + "\n")
    (tmp_path / "doc.json").write_text('[{"message": "ok"}, ' + "[" * 100_000 + "\n")
    result = ingest([tmp_path], data_dir=tmp_path / "data", progress=False)
    messages = [r["message"] for r in load_records(result.path)]
    assert messages[:2] == ["ok", "ok"] and messages[2].startswith('{"a": [[[')
    assert result.manifest["counts"]["broken_lines"] == 2
