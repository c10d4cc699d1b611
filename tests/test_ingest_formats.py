"""Each format on hand-written lines of the shape real systems write: the fields a record gets."""

from __future__ import annotations

from collections import Counter
from datetime import date

import pytest

from mambapoc.errors import UserError
from mambapoc.ingest import documents, jsonlines, multiline, tabular
from mambapoc.ingest.detect import content_suffix, detect
from mambapoc.ingest.families import LINE_FORMATS
from mambapoc.ingest.fields import normalize_level

MODIFIED = date(2024, 3, 14)


def parse(fmt: str, text: str, modified: date = MODIFIED):
    counts = Counter()
    return list(multiline.events(text.splitlines(), LINE_FORMATS[fmt], modified, counts)), counts


def test_syslog_rfc3164():
    [ev], _ = parse(
        "syslog",
        "Dec 10 06:55:46 LabSZ sshd[24200]: Failed password for invalid user webmaster from "
        "173.234.31.186 port 38926 ssh2",
    )
    assert ev.component == "sshd"
    assert ev.message == "Failed password for invalid user webmaster from 173.234.31.186 port 38926 ssh2"
    assert ev.prefix == "Dec 10 06:55:46 LabSZ sshd[24200]: "
    # No year in the line: the file's date gives it, the year before for a month after that date.
    assert ev.timestamp == "2023-12-10T06:55:46"
    assert ev.level is None


def test_syslog_single_digit_day_priority_and_iso_timestamp():
    events, _ = parse(
        "syslog",
        "<86>Mar  4 00:17:01 web-1 CRON[3312]: (root) CMD (run-parts /etc/cron.hourly)\n"
        "2024-03-11T00:02:00.123456+00:00 bastion-1 dhclient[812]: DHCPACK of 10.0.0.4\n"
        "Mar 11 00:05:00 bastion-1 kernel: [ 12.5] eth0: link up",
    )
    assert [e.timestamp for e in events] == [
        "2024-03-04T00:17:01",
        "2024-03-11T00:02:00.123456+00:00",
        "2024-03-11T00:05:00",
    ]
    assert events[0].level_raw == "info" and events[0].level == "INFO"  # PRI 86 = authpriv.info
    assert [e.component for e in events] == ["CRON", "dhclient", "kernel"]
    assert events[2].message == "[ 12.5] eth0: link up"


def test_syslog_rfc5424():
    [ev], _ = parse(
        "syslog5424",
        "<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 "
        '[exampleSDID@32473 iut="3" eventSource="Application" eventID="1011"] '
        "An application event log entry",
    )
    assert ev.timestamp == "2003-10-11T22:14:15.003Z"
    assert ev.level_raw == "notice" and ev.level == "NOTICE"  # 165 % 8 = 5
    assert ev.component == "evntslog"
    assert ev.message == "An application event log entry"


def test_access_log_common_and_combined():
    line = (
        '203.0.113.9 - - [11/Mar/2024:14:05:09 +0000] "POST /api/v1/orders HTTP/1.1" 502 157 '
        '"https://shop.example.com/" "Mozilla/5.0 (X11; Linux x86_64)" rt=30.001 rid=7f3a9c01b2d4'
    )
    events, _ = parse(
        "access",
        '127.0.0.1 - frank [10/Oct/2000:13:55:36 -0700] "GET /apache_pb.gif HTTP/1.0" 200 2326\n' + line,
    )
    common, combined = events
    assert common.timestamp == "2000-10-10T13:55:36-07:00"
    assert common.message == '"GET /apache_pb.gif HTTP/1.0" 200 2326'
    assert (common.level_raw, common.level) == ("200", "INFO")
    assert combined.message == '"POST /api/v1/orders HTTP/1.1" 502 157'
    assert (
        combined.suffix
        == ' "https://shop.example.com/" "Mozilla/5.0 (X11; Linux x86_64)" rt=30.001 rid=7f3a9c01b2d4'
    )
    assert (combined.level_raw, combined.level) == ("502", "ERROR")
    assert combined.prefix + combined.message + combined.suffix == line


def test_apache_error_log_22_and_24():
    events, _ = parse(
        "apache-error",
        "[Sun Dec 04 04:47:44 2005] [error] mod_jk child workerEnv in error state 6\n"
        "[Wed Oct 11 14:32:52.123456 2023] [core:error] [pid 35708:tid 4328636416] "
        "[client 72.15.99.187] File does not exist: /usr/local/apache2/htdocs/favicon.ico",
    )
    old, new = events
    assert (old.timestamp, old.level, old.component) == ("2005-12-04T04:47:44", "ERROR", None)
    assert old.message == "mod_jk child workerEnv in error state 6"
    assert (new.timestamp, new.level_raw, new.component) == ("2023-10-11T14:32:52.123456", "error", "core")
    assert new.message.startswith("[pid 35708:tid 4328636416] [client 72.15.99.187] File does not exist")


def test_log4j_with_stack_trace_joined():
    text = (
        "2015-10-18 18:01:47,978 INFO [main] org.apache.hadoop.mapreduce.v2.app.MRAppMaster: Created\n"
        "2015-10-18 18:01:50,353 ERROR [RMCommunicator Allocator] "
        "org.apache.hadoop.mapreduce.v2.app.rm.RMContainerAllocator: ERROR IN CONTACTING RM.\n"
        "java.net.ConnectException: Connection refused\n"
        "\tat sun.nio.ch.SocketChannelImpl.checkConnect(Native Method)\n"
        "\tat org.apache.hadoop.ipc.Client.call(Client.java:1468)\n"
        "Caused by: java.io.IOException: boom\n"
        "\t... 12 more\n"
        "2015-10-18 18:01:51,001 WARN  [main] org.apache.hadoop.conf.Configuration: deprecated key\n"
    )
    events, counts = parse("log4j", text)
    assert len(events) == 3
    err = events[1]
    assert (err.line, err.timestamp, err.level, err.component) == (
        2,
        "2015-10-18T18:01:50.353",
        "ERROR",
        "org.apache.hadoop.mapreduce.v2.app.rm.RMContainerAllocator",
    )
    assert err.message.splitlines()[0] == "ERROR IN CONTACTING RM."
    assert err.message.endswith("Caused by: java.io.IOException: boom\n\t... 12 more")
    assert events[2].level_raw == "WARN" and events[2].line == 8
    assert counts["unmatched_lines"] == 0


def test_logback_layout():
    [ev], _ = parse(
        "log4j",
        "2024-03-11 09:00:01.123 [http-nio-8080-exec-3] WARN  c.a.checkout.OrderService - "
        "slow query took 2450 ms",
    )
    assert (ev.timestamp, ev.level, ev.component) == (
        "2024-03-11T09:00:01.123",
        "WARN",
        "c.a.checkout.OrderService",
    )
    assert ev.message == "slow query took 2450 ms"


def test_hdfs():
    [ev], _ = parse(
        "hdfs",
        "081109 203615 148 INFO dfs.DataNode$PacketResponder: PacketResponder 1 for block "
        "blk_38865049064139660 terminating",
    )
    assert (ev.timestamp, ev.level, ev.component) == (
        "2008-11-09T20:36:15",
        "INFO",
        "dfs.DataNode$PacketResponder",
    )
    assert ev.message == "PacketResponder 1 for block blk_38865049064139660 terminating"


def test_plain_lines_pick_up_timestamp_level_and_continuations():
    events, _ = parse(
        "plain",
        "2024-03-11 01:36:00.897 [INFO] BackupAgent: job nightly-sql started\n"
        "ERROR: disk full\n"
        "    at Acme.Backup.Runner.Execute()\n"
        "just a line\n",
    )
    assert [(e.timestamp, e.level) for e in events] == [
        ("2024-03-11T01:36:00.897", "INFO"),
        (None, "ERROR"),
        (None, None),
    ]
    assert events[1].message == "disk full\n    at Acme.Backup.Runner.Execute()"
    assert events[2].message == "just a line"


def test_unmatched_lines_stand_alone_and_are_counted():
    events, counts = parse("syslog", "Mar 11 00:05:00 host sshd[1]: ok\nthis is not syslog\n")
    assert [e.message for e in events] == ["ok", "this is not syslog"]
    assert events[1].component is None and counts["unmatched_lines"] == 1


def test_jsonl_common_keys_nested_fields_and_broken_lines():
    lines = [
        '{"@timestamp":"2024-03-12T14:05:09.575Z","log":{"level":"error","logger":"payments.gateway"},'
        '"message":"upstream timed out","http":{"response":{"status_code":504}},"tags":["a","b"]}',
        '{"time": 1710252309, "level": 30, "msg": "pino style", "pid": 7}',
        '{"ts": "2024-03-12 14:05:09,5", "severity": "WARNING", "logger_name": "x.y", "message": "spaces"}',
        '{"timestamp": "yesterday", "message": "no real time"}',
        '{"message": "cut in the mid',
        "[1, 2, 3]",
    ]
    counts = Counter()
    events = list(jsonlines.events(lines, counts))
    first = events[0]
    assert (first.timestamp, first.level, first.level_raw, first.component) == (
        "2024-03-12T14:05:09.575Z",
        "ERROR",
        "error",
        "payments.gateway",
    )
    assert first.message == "upstream timed out"
    assert first.prefix == "2024-03-12T14:05:09.575Z ERROR payments.gateway: "
    assert first.suffix == ' | http.response.status_code=504 tags=["a","b"]'
    assert (events[1].timestamp, events[1].level, events[1].message) == (
        "2024-03-12T14:05:09Z",
        "INFO",
        "pino style",
    )
    assert events[1].suffix == " | pid=7"
    assert (events[2].timestamp, events[2].level, events[2].component) == (
        "2024-03-12T14:05:09.5",
        "WARN",
        "x.y",
    )
    assert events[3].timestamp is None and "timestamp=yesterday" in events[3].suffix
    assert [e.message for e in events[4:]] == ['{"message": "cut in the mid', "[1, 2, 3]"]
    assert counts["broken_lines"] == 2


def test_jsonl_text_and_label_fields():
    counts = Counter()
    [ev] = jsonlines.events(
        ['{"body": "disk full on dn-7", "alert": {"kind": "disk"}, "message": "ignored"}'],
        counts,
        text_field="body",
        label_field="alert.kind",
    )
    assert ev.message == "disk full on dn-7" and ev.label == "disk"
    assert "disk" not in ev.suffix  # the label stays out of what a model reads


CSV = """ticket_id,created_at,requester_email,subject,description,category
T-1,2024-03-12T14:16:00Z,jane@example.com,Checkout down,"Checkout returns 502 since 14:05.
Please escalate.",outage
T-2,2024-03-12T15:00:00Z,omar@example.com,Refund,"I was charged twice, order ORD-1.",billing
"""


def test_csv_auto_columns_and_quoted_newlines():
    counts = Counter()
    events = list(tabular.events(CSV.splitlines(), ",", "tickets.csv", counts))
    assert [e.label for e in events] == ["outage", "billing"]
    assert events[0].message == "Checkout returns 502 since 14:05.\nPlease escalate."
    assert (events[0].line, events[1].line) == (2, 4)
    assert events[0].timestamp == "2024-03-12T14:16:00Z"
    assert "jane@" not in events[0].message and "outage" not in events[0].message


def test_csv_named_columns_and_missing_column():
    counts = Counter()
    [ev, _] = tabular.events(
        CSV.splitlines(), ",", "tickets.csv", counts, text_field="subject,description", label_field="category"
    )
    assert ev.message.startswith("Checkout down\nCheckout returns 502")
    with pytest.raises(UserError, match="no column 'severity'; columns are: ticket_id"):
        list(tabular.events(CSV.splitlines(), ",", "tickets.csv", counts, label_field="severity"))


def test_tsv_without_known_column_names_uses_the_longest_column():
    counts = Counter()
    lines = [
        "id\tnote\tkind",
        "1\tthe disk on dn-7 is full\tdisk",
        "2\tssh brute force from outside\tsecurity",
    ]
    events = list(tabular.events(lines, "\t", "alerts.tsv", counts))
    assert [e.message for e in events] == ["the disk on dn-7 is full", "ssh brute force from outside"]
    assert events[0].label is None


def test_markdown_sections_keep_their_heading_path_and_code_blocks():
    text = """# Runbook: DB pool

Intro.

## Mitigation

Roll back first.

```bash
# a comment, not a heading
kubectl rollout undo deploy/checkout
```

Escalation
----------

Call the on-call.
"""
    events = list(documents.events(text.splitlines()))
    assert [e.component for e in events] == [
        "Runbook: DB pool",
        "Runbook: DB pool > Mitigation",
        "Runbook: DB pool > Escalation",
    ]
    assert "# a comment, not a heading" in events[1].message
    assert events[1].prefix == "# Runbook: DB pool\n## Mitigation\n\n"
    assert events[2].message == "Call the on-call." and events[2].line == 17
    assert not any(e.mine_template for e in events)


def test_long_text_is_cut_into_chunks_at_paragraphs():
    para = "word " * 120
    events = list(documents.events([para, "", para, "", para, "", para]))
    assert len(events) == 2
    assert all(e.message.count("\n\n") <= 2 for e in events)


@pytest.mark.parametrize(
    "raw, level",
    [
        ("WARNING", "WARN"),
        ("warn", "WARN"),
        ("E", "ERROR"),
        ("crit", "FATAL"),
        ("SEVERE", "ERROR"),
        ("notice", "NOTICE"),
        ("Trace", "TRACE"),
        ("verbose", "DEBUG"),
        ("whatever", None),
        (None, None),
    ],
)
def test_levels_are_normalised(raw, level):
    assert normalize_level(raw) == level


def test_detection_by_content_and_by_name():
    log4j = ["2015-10-18 18:01:47,978 INFO [main] org.x.Y: start", "java.lang.Error: x", "\tat a.b(C.java:1)"]
    assert detect("app.log.1.gz", log4j) == ("log4j", 1.0)
    assert detect("x", ['{"msg": "a"}', '{"msg": "b"}'])[0] == "jsonl"
    assert detect("auth", ["Mar 11 00:05:00 host sshd[1]: ok"])[0] == "syslog"
    assert (
        detect("access.log", ['1.2.3.4 - - [10/Oct/2000:13:55:36 -0700] "GET / HTTP/1.0" 200 2'])[0]
        == "access"
    )
    assert detect("error_log", ["[Sun Dec 04 04:47:44 2005] [error] boom"])[0] == "apache-error"
    assert detect("dn.log", ["081109 203615 148 INFO dfs.DataNode: x"])[0] == "hdfs"
    assert detect("x.log", ["<34>1 2003-10-11T22:14:15.003Z host su - ID47 - failed"])[0] == "syslog5424"
    assert detect("export.csv", ["a,b", "1,2", "3,4"]) == ("csv", 1.0)
    assert detect("notes.md", ["# Title"]) == ("document", 1.0)
    assert detect("notes.txt", ["Some prose.", "", "More prose."]) == ("document", 1.0)
    assert detect("output", ["hello", "world"]) == ("plain", 1.0)


def test_content_suffix_skips_compression_and_rotation():
    assert content_suffix("logs/app.log.1.gz") == ".log"
    assert content_suffix("events.jsonl.xz") == ".jsonl"
    assert content_suffix("syslog") == ""
