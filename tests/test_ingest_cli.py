"""`mambapoc ingest` and `mambapoc datasets` as a user runs them, and the demo's own input."""

from __future__ import annotations

import gzip
import importlib.util
import zipfile
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "sample_data"
LOG = (
    "2024-03-12 14:05:03,500 ERROR [exec-3] com.acme.Api: request 0a1b2c3d4e5f failed for jane@example.com\n"
)


@pytest.fixture
def logs(tmp_path):
    src = tmp_path / "logs"
    src.mkdir()
    (src / "app.log").write_text(LOG * 3)
    (src / "tickets.csv").write_text("text,label\nsite down,outage\ncharged twice,billing\n")
    return src


def test_ingest_then_list_then_show(cli, tmp_path, logs):
    data = str(tmp_path / "data")
    code, out, _ = cli("ingest", str(logs), "--data-dir", data)
    assert code == 0
    assert "Dataset written to" in out and "(5 records from 2 sources" in out
    assert f"Next: mambapoc datasets show logs --data-dir {data}" in out

    code, out, _ = cli("ingest", str(logs), "--data-dir", data)
    assert code == 0 and "is up to date" in out and "--force" in out

    code, out, _ = cli("datasets", "--data-dir", data)
    assert code == 0 and "logs" in out and "5" in out and "Next: mambapoc datasets show NAME" in out

    code, out, _ = cli("datasets", "show", "logs", "--data-dir", data)
    assert code == 0
    for section in (
        "Sources",
        "Counts",
        "Masked values",
        "Field coverage",
        "Levels",
        "Labels",
        "Top templates",
    ):
        assert section in out, section
    assert "log4j" in out and "csv" in out and "outage" in out and "<EMAIL_1>" in out
    assert "jane@example.com" not in out


def test_missing_path_is_one_line_and_writes_nothing(cli, tmp_path, logs):
    code, out, err = cli(
        "ingest", str(logs), str(tmp_path / "nope"), "--data-dir", str(tmp_path / "data")
    )
    assert code == 1
    assert err.strip() == f"error: {tmp_path / 'nope'}: no such file or directory"
    assert not (tmp_path / "data").exists()


def test_warnings_for_skipped_and_damaged_input(cli, tmp_path, logs):
    (logs / "image.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(200))
    (logs / "old.log").write_bytes(b"2024-03-12 14:05:03,500 WARN [m] a.B: termin\xe9e\n")
    code, _, err = cli("ingest", str(logs), "--data-dir", str(tmp_path / "data"))
    assert code == 0
    assert "logs/image.png looks binary; skipped" in err
    assert "1 lines not valid UTF-8" in err


def test_unknown_dataset_and_empty_data_dir(cli, tmp_path, logs):
    code, out, _ = cli("datasets", "--data-dir", str(tmp_path / "none"))
    assert code == 0 and "No datasets in" in out and "mambapoc ingest" in out
    cli("ingest", str(logs), "--name", "mine", "--data-dir", str(tmp_path / "data"))
    code, _, err = cli("datasets", "show", "theirs", "--data-dir", str(tmp_path / "data"))
    assert code == 1 and err.count("\n") == 1 and "available: mine" in err


def test_the_demo_input_ingests_in_one_call_without_leaking(cli, tmp_path):
    paths = [str(SAMPLE / d) for d in ("logs", "labelled", "docs")]
    code, out, _ = cli(
        "ingest", *paths, "--data-dir", str(tmp_path / "data"), "--label-field", "category"
    )
    assert code == 0, out
    ds = tmp_path / "data" / "sample_data"
    m = yaml.safe_load((ds / "manifest.yaml").read_text())
    formats = {s["path"]: s["format"] for s in m["sources"]}
    assert formats["logs/checkout/app.log"] == "log4j"
    assert formats["logs/checkout/app-2024-03-11.log.gz"] == "log4j"
    assert formats["logs/nginx/access.log"] == "access"
    assert formats["logs/payments/events.jsonl"] == "jsonl"
    assert formats["logs/bastion/auth.log.1.gz"] == formats["logs/bastion/syslog"] == "syslog"
    assert formats["logs/hdfs/datanodes.zip!/dn-07.log"] == "hdfs"
    # Induction reads the `[client …]` of each line too, which the apache-error format leaves in the message.
    assert formats["logs/admin-portal/error_log"] == "induced"
    assert formats["logs/backup-agent/agent.log"] == "induced"  # its `Component:` is learned, not left in the message
    assert formats["labelled/tickets.csv"] == "csv"
    assert {f for p, f in formats.items() if p.startswith("docs/")} == {"document"}
    assert min(s["confidence"] for s in m["sources"]) >= 0.9
    assert len(m["labels"]) >= 5 and min(m["labels"].values()) >= 50
    assert m["counts"]["records"] > 10_000 and m["levels"]["ERROR"] > 100
    written = gzip.decompress((ds / "records.jsonl.gz").read_bytes()).decode()
    for secret in (
        "AKIA",
        "Chk0ut-Pr0d-2024",
        "ghp_",
        "sk_live_",
        "4111 1111",
        "eyJ",
        "203.0.113.45",
        "@example.com",
        "52:54:00:1a:2b:3c",
        "deploy-bot:",
    ):
        assert secret not in written, secret
    # Request ids and statuses stay readable for retrieval tasks.
    assert "request_id=" in written and "status=500" in written and '\\" 502 ' in written


def _content(path: Path) -> object:
    """What a file holds, compression aside: compressed bytes may differ between zlib builds."""
    if path.suffix == ".gz":
        return gzip.decompress(path.read_bytes())
    if path.suffix == ".zip":
        with zipfile.ZipFile(path) as zf:
            return [(name, zf.read(name)) for name in zf.namelist()]
    return path.read_bytes()


def test_the_committed_sample_data_is_what_the_generator_writes(tmp_path):
    spec = importlib.util.spec_from_file_location("generate", SAMPLE / "generate.py")
    generate = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generate)
    generate.main(tmp_path)
    for path in sorted(tmp_path.rglob("*")):
        if path.is_file():
            assert _content(path) == _content(SAMPLE / path.relative_to(tmp_path)), path
