"""The built-in families beyond the first formats, on lines written for these tests in the shape each system
writes: detection, and the fields each record gets."""

from __future__ import annotations

import gzip
import io
import json
import tarfile
from collections import Counter
from datetime import date

import pytest

from mambapoc.ingest import eventlog, ingest, jsondoc, jsonlines, logfmt, multiline, tabular
from mambapoc.ingest.dataset import load_records
from mambapoc.ingest.detect import choose, detect
from mambapoc.ingest.families import LINE_FORMATS

MODIFIED = date(2024, 3, 14)


def parse(fmt: str, text: str):
    return list(multiline.events(text.splitlines(), LINE_FORMATS[fmt], MODIFIED, Counter()))


def _run(paths, tmp_path, **kw):
    return ingest([str(p) for p in paths], data_dir=tmp_path / "data", progress=False, **kw)


CASES = {
    "android": (
        "03-12 14:05:01.118  2210  2251 I PowerHal: boost to 1.8 GHz for 120 ms\n"
        "03-12 14:05:01.204  2210  2251 W ThermalD  : zone 3 at 71 C\n",
        [("2024-03-12T14:05:01.118", "INFO", "PowerHal", {"pid": "2210", "tid": "2251"}, "boost to 1.8 GHz for 120 ms"),
         ("2024-03-12T14:05:01.204", "WARN", "ThermalD", {"pid": "2210", "tid": "2251"}, "zone 3 at 71 C")],
    ),
    "log4j": (
        "24/03/12 14:05:01 INFO storage.BlockStore: Found block rdd_4_7 locally\n"
        "24/03/12 14:05:02 WARN TaskSetKeeper: Lost task 2.0 in stage 5.0\n",
        [("2024-03-12T14:05:01", "INFO", "storage.BlockStore", None, "Found block rdd_4_7 locally"),
         ("2024-03-12T14:05:02", "WARN", "TaskSetKeeper", None, "Lost task 2.0 in stage 5.0")],
    ),
    "zookeeper": (
        "2024-03-12 14:05:01,118 - INFO  [Relay[id=2]/0.0.0.0:2190:LeaderPicker@311] - Round 4 timed out\n"
        "2024-03-12 14:05:02,007 - WARN  [main:Bootstrap@77] - Snapshot dir is empty\n",
        [("2024-03-12T14:05:01.118", "INFO", "LeaderPicker",
          {"thread": "Relay[id=2]/0.0.0.0:2190", "line": "311"}, "Round 4 timed out"),
         ("2024-03-12T14:05:02.007", "WARN", "Bootstrap", {"thread": "main", "line": "77"}, "Snapshot dir is empty")],
    ),
    "openstack": (
        "compute-api.log.2.2024-03-12_10:00:00 2024-03-12 14:05:01.118 3141 INFO relay.api.server "
        "[req-0a1b2c3d-0000-4000-8000-00000000abcd user-7 proj-2 - - -] 10.9.8.7 \"GET /v1/nodes\" 200\n"
        "2024-03-12 14:05:02.500 3141 ERROR relay.scheduler [-] No host fits flavor m1.small\n",
        [("2024-03-12T14:05:01.118", "INFO", "relay.api.server",
          {"file": "compute-api.log.2.2024-03-12_10:00:00", "pid": "3141",
           "context": "req-0a1b2c3d-0000-4000-8000-00000000abcd user-7 proj-2 - - -"},
          '10.9.8.7 "GET /v1/nodes" 200'),
         ("2024-03-12T14:05:02.500", "ERROR", "relay.scheduler", {"pid": "3141"}, "No host fits flavor m1.small")],
    ),
    "windows-cbs": (
        "2024-03-12 14:05:01, Info                  CBS    Loaded servicing stack v7.2 from staging\n"
        "2024-03-12 14:05:02, Warning               CSI    00000004 Manifest hash mismatch, retrying\n",
        [("2024-03-12T14:05:01", "INFO", "CBS", None, "Loaded servicing stack v7.2 from staging"),
         ("2024-03-12T14:05:02", "WARN", "CSI", None, "00000004 Manifest hash mismatch, retrying")],
    ),
    "bgl": (
        "- 1710252301 2024.03.12 R11-M0-N3-C:J02-U01 2024-03-12-14.05.01.118203 R11-M0-N3-C:J02-U01 RAS KERNEL "
        "INFO 12 parity errors corrected\n"
        "KERNPANIC 1710252302 2024.03.12 R11-M0-N4 2024-03-12-14.05.02.000001 R11-M0-N4 RAS APP FATAL "
        "job 881 lost its node\n",
        [("2024-03-12T14:05:01.118203", "INFO", "KERNEL", {"node": "R11-M0-N3-C:J02-U01", "type": "RAS"},
          "12 parity errors corrected"),
         ("2024-03-12T14:05:02.000001", "FATAL", "APP", {"alert": "KERNPANIC", "node": "R11-M0-N4", "type": "RAS"},
          "job 881 lost its node")],
    ),
    "nginx-error": (
        "2024/03/12 14:05:01 [error] 812#812: *4402 upstream timed out while reading, client: 10.1.2.3\n",
        [("2024-03-12T14:05:01", "ERROR", None, {"pid": "812", "tid": "812", "connection": "4402"},
          "upstream timed out while reading, client: 10.1.2.3")],
    ),
    "cri": (
        "2024-03-12T14:05:01.118203344Z stdout F listening on :8080\n"
        "2024-03-12T14:05:01.220000000Z stderr F warn: cache cold\n",
        [("2024-03-12T14:05:01.118203344Z", None, None, {"stream": "stdout", "tag": "F"}, "listening on :8080"),
         ("2024-03-12T14:05:01.220000000Z", None, None, {"stream": "stderr", "tag": "F"}, "warn: cache cold")],
    ),
}


@pytest.mark.parametrize("fmt", CASES)
def test_family_fields_and_detection(fmt):
    text, expected = CASES[fmt]
    events = parse(fmt, text)
    got = [(e.timestamp, e.level, e.component, e.fields, e.message) for e in events]
    assert got == expected
    assert detect("x.log", text.splitlines())[0] == fmt


def test_split_container_lines_are_joined_per_stream():
    # CRI: pieces tagged P, the last F; another stream's line in between is an event of its own.
    cri = ("2024-03-12T14:05:01.000000001Z stdout P {\"user\": \"a\", \"pay\n"
           "2024-03-12T14:05:01.000000002Z stdout P load\": \"xy\n"
           "2024-03-12T14:05:01.000000003Z stderr F warn: slow disk\n"
           "2024-03-12T14:05:01.000000004Z stdout F z\"}\n"
           "2024-03-12T14:05:02.000000000Z stdout F next line\n").replace("\\n", "\n")
    counts = Counter()
    got = list(multiline.events(cri.splitlines(), LINE_FORMATS["cri"], MODIFIED, counts))
    assert [e.message for e in got] == ['{"user": "a", "payload": "xy', "warn: slow disk", "z\"}", "next line"]
    whole = [line for line in cri.splitlines() if " stderr " not in line]
    got = list(multiline.events(whole, LINE_FORMATS["cri"], MODIFIED, counts))
    assert [e.message for e in got] == ['{"user": "a", "payload": "xyz"}', "next line"]
    assert got[0].timestamp == "2024-03-12T14:05:01.000000001Z" and counts["joined_pieces"] == 1 + 2
    # Docker json-file: a `log` without its final newline goes on in the stream's next record.
    pieces = [json.dumps({"log": part, "stream": "stdout", "time": f"2024-03-12T14:05:0{i}Z"})
              for i, part in enumerate(["GET /a?q=", "1234", "5 200\n", "done\n"])]
    pieces.insert(1, json.dumps({"log": "oops\n", "stream": "stderr", "time": "2024-03-12T14:05:00Z"}))
    docker = list(jsonlines.events(pieces, Counter()))
    assert [e.message for e in docker] == ["GET /a?q=", "oops", "12345 200", "done"]
    docker = list(jsonlines.events([p for p in pieces if "stderr" not in p], counts := Counter()))
    assert [e.message for e in docker] == ["GET /a?q=12345 200", "done"] and counts["joined_pieces"] == 2
    assert docker[0].timestamp == "2024-03-12T14:05:00Z"


def test_syslog_takes_a_level_word_that_opens_the_message():
    [ev] = parse("syslog", "Mar 12 14:05:01 gw-2 relayd[4412]: <warning> link 3 flapping")
    assert (ev.level, ev.message, ev.fields) == ("WARN", "link 3 flapping", {"host": "gw-2", "pid": "4412"})


def test_java_stack_traces_join_the_event_in_families_and_learned_layouts(tmp_path):
    trace = (
        "2024-03-12 14:05:01,118 - ERROR [main:Bootstrap@77] - Could not start\n"
        "java.io.IOException: port 2190 in use\n"
        "\tat relay.net.Binder.bind(Binder.java:42)\n"
        "Caused by: java.net.BindException: Address already in use\n"
        "\t... 4 more\n"
        "2024-03-12 14:05:02,000 - INFO  [main:Bootstrap@80] - Retrying\n"
    )
    events = parse("zookeeper", trace)
    assert len(events) == 2 and events[0].message.endswith("\t... 4 more")


def test_logfmt():
    lines = [
        'time=2024-03-12T14:05:01.118Z level=warn msg="cache cold, warming" component=relay keys=812',
        "ts=1710252301 lvl=error msg=failed err=\"dial tcp: refused\"",
        "not logfmt at all",
    ]
    assert detect("relay.log", lines[:2])[0] == "logfmt"
    counts = Counter()
    first, second, third = logfmt.events(lines, counts)
    assert (first.timestamp, first.level, first.component, first.message) == (
        "2024-03-12T14:05:01.118Z", "WARN", "relay", "cache cold, warming")
    assert first.suffix == " | keys=812"
    assert (second.timestamp, second.level, second.message) == ("2024-03-12T14:05:01Z", "ERROR", "failed")
    assert 'err=dial tcp: refused' in second.suffix
    assert third.message == "not logfmt at all" and counts["broken_lines"] == 1


def test_journald_export_and_docker_json_lines():
    journal = json.dumps({
        "__CURSOR": "s=0a1b;i=2", "__REALTIME_TIMESTAMP": "1710252301118203", "PRIORITY": "3",
        "_SYSTEMD_UNIT": "relay.service", "SYSLOG_IDENTIFIER": "relayd", "MESSAGE": "uplink lost",
        "_HOSTNAME": "gw-2",
    })
    docker = '{"log":"listening on :8080\\n","stream":"stdout","time":"2024-03-12T14:05:01.118203344Z"}'
    j, d = jsonlines.events([journal, docker], Counter())
    assert (j.timestamp, j.level, j.component, j.message) == (
        "2024-03-12T14:05:01.118203Z", "ERROR", "relayd", "uplink lost")
    assert "__CURSOR" not in j.suffix and "_HOSTNAME=gw-2" in j.suffix
    assert (d.timestamp, d.message, d.suffix) == ("2024-03-12T14:05:01.118203344Z", "listening on :8080",
                                                  " | stream=stdout")


WINDOWS_XML = """<?xml version="1.0" encoding="utf-8"?>
<Events>
<Event xmlns='http://schemas.microsoft.com/win/2004/08/events/event'><System>
  <Provider Name='Relay Service'/><EventID Qualifiers='16384'>7036</EventID><Level>4</Level>
  <TimeCreated SystemTime='2024-03-12T14:05:01.1182030Z'/><Computer>gw-2.corp.test</Computer>
  <Channel>System</Channel></System>
  <EventData><Data Name='param1'>Relay</Data><Data Name='param2'>running</Data></EventData>
  <RenderingInfo Culture='en-US'><Message>The Relay service entered the running state.</Message></RenderingInfo>
</Event>
<Event xmlns='http://schemas.microsoft.com/win/2004/08/events/event'><System>
  <Provider Name='Disk'/><EventID>51</EventID><Level>2</Level>
  <TimeCreated SystemTime='2024-03-12T14:05:02.0000000Z'/><Computer>gw-2.corp.test</Computer></System>
  <EventData><Data Name='device'>\\Device\\Harddisk1</Data></EventData>
</Event>
</Events>
"""


def test_windows_event_log_xml():
    lines = WINDOWS_XML.splitlines()
    assert detect("system.xml", lines) == ("windows-xml", 1.0)
    counts = Counter()
    first, second = eventlog.events(lines, counts)
    assert (first.timestamp, first.level, first.component, first.message) == (
        "2024-03-12T14:05:01.1182030Z", "INFO", "Relay Service", "The Relay service entered the running state.")
    assert "EventID=7036" in first.suffix and "Data.param2=running" in first.suffix and first.line == 3
    assert (second.level, second.message) == ("ERROR", "device=\\Device\\Harddisk1")
    broken = Counter()
    assert len(list(eventlog.events(lines[:9] + ["<Event><oops></Event>"], broken))) == 1
    assert broken["broken_lines"] == 1


def test_windows_event_viewer_csv_has_an_unnamed_description_column():
    lines = [
        "Level,Date and Time,Source,Event ID,Task Category",
        'Information,3/12/2024 2:05:01 PM,Relay Service,7036,None,"The Relay service entered the running state."',
        "Error,3/12/2024 2:05:02 PM,Disk,51,None,An error was detected on device 1.",
    ]
    assert detect("system.csv", lines) == ("csv", 1.0)
    counts = Counter()
    first, second = tabular.events(lines, ",", "system.csv", counts)
    assert (first.timestamp, first.level, first.component, first.message) == (
        "2024-03-12T14:05:01", "INFO", "Relay Service", "The Relay service entered the running state.")
    assert second.level == "ERROR" and counts["broken_lines"] == 0


def test_json_documents_array_records_object_and_one_long_line(tmp_path):
    records = [{"eventTime": f"2024-03-12T14:05:0{i}Z", "eventSource": "s3.test", "eventName": "GetObject",
                "userIdentity": {"type": "IAMUser"}, "requestID": f"R{i}"} for i in range(3)]
    (tmp_path / "trail.json").write_text(json.dumps({"Records": records, "nextToken": "t-1"}))
    (tmp_path / "pretty.json").write_text(json.dumps(records, indent=2))
    # One line far longer than --max-line-bytes: a document has no lines to cut.
    (tmp_path / "long.json").write_text(json.dumps({"Records": records * 400}))
    result = _run(tmp_path.glob("*.json"), tmp_path, max_line_bytes=4096)
    by_source = Counter(r["source"] for r in load_records(result.path))
    assert by_source == {"long.json": 1200, "pretty.json": 3, "trail.json": 3}
    assert {s["format"] for s in result.manifest["sources"]} == {"json"}
    first = next(r for r in load_records(result.path) if r["source"] == "pretty.json")
    assert (first["timestamp"], first["component"], first["message"], first["line"]) == (
        "2024-03-12T14:05:00Z", "s3.test", "GetObject", 2)
    assert "userIdentity.type=IAMUser" in first["text"] and result.manifest["counts"]["truncated_lines"] == 0


def test_a_broken_json_document_keeps_what_came_before(tmp_path):
    counts = Counter()
    events = list(jsondoc.events(['[{"msg": "a"}, {"msg": "b"}, {"msg": '], counts, 1 << 20))
    assert [e.message for e in events] == ["a", "b"] and counts["broken_lines"] == 1
    assert [e.message for e in jsondoc.events(['{"single": 1, "message": "only"}'], counts, 1 << 20)] == ["only"]


def test_a_log_line_opening_with_a_bracket_is_not_a_json_document():
    lines = [f"[2024-03-12 14:05:0{i},118] WARN slot {i} late (relay.Pool)" for i in range(5)]
    assert choose("relay.log", lines).format == "induced"


def _tar(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size, info.mtime = len(data), 1_710_252_301
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_tar_archives_compressed_or_not_each_member_a_source(tmp_path):
    log4j = b"2024-03-12 14:05:01,118 INFO [main] relay.Api: started\n"
    members = {"logs/api.log": log4j, "logs/old.log.gz": gzip.compress(log4j), "logs/.hidden": log4j,
               "events.jsonl": b'{"msg": "hello", "level": "info"}\n'}
    (tmp_path / "bundle.tar").write_bytes(_tar(members))
    (tmp_path / "bundle.tgz").write_bytes(gzip.compress(_tar(members)))
    result = _run([tmp_path / "bundle.tar", tmp_path / "bundle.tgz"], tmp_path)
    got = {s["path"]: (s["format"], s["compression"], s["records"]) for s in result.manifest["sources"]}
    assert got == {
        "bundle.tar!/logs/api.log": ("log4j", "tar", 1),
        "bundle.tar!/logs/old.log.gz": ("log4j", "gzip", 1),
        "bundle.tar!/events.jsonl": ("jsonl", "tar", 1),
        "bundle.tgz!/logs/api.log": ("log4j", "tar.gzip", 1),
        "bundle.tgz!/logs/old.log.gz": ("log4j", "gzip", 1),
        "bundle.tgz!/events.jsonl": ("jsonl", "tar.gzip", 1),
    }
