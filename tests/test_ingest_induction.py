"""Header induction on layouts written for these tests, none of them a format the code lists: what each
record gets, what stays out of the message, and when induction declines."""

from __future__ import annotations

import random
from collections import Counter
from datetime import date

import pytest

from mambapoc.ingest import ingest, multiline
from mambapoc.ingest.dataset import load_records, read_manifest
from mambapoc.ingest.declared import Declared, line_format
from mambapoc.ingest.detect import choose
from mambapoc.ingest.induce import induce
from mambapoc.ingest.timestamps import parse_timestamp

MODIFIED = date(2024, 3, 14)
MESSAGES = (
    "queue at {n} of 1000 slots",
    "slot {n} released after {n} ms",
    "rebalanced partition {n} onto edge-{n}",
    "cache warmed with {n} entries",
    "retrying upload of part {n}",
)


def _message(rng: random.Random) -> str:
    return rng.choice(MESSAGES).replace("{n}", "{}").format(*(rng.randrange(1, 999) for _ in range(2)))


def _pipes(rng: random.Random, i: int) -> tuple[str, str, str, str, str]:
    """dd.MM.yyyy, pipe-separated, level third, component fourth."""
    level, comp, msg = rng.choice(("WARN", "INFO", "ERROR")), rng.choice(("PoolKeeper", "Uplink")), _message(rng)
    line = f"12.03.2024 14:{i // 60 % 60:02d}:{i % 60:02d}.118 | edge-{rng.randrange(9)} | {level} | {comp} | {msg}"
    return line, f"2024-03-12T14:{i // 60 % 60:02d}:{i % 60:02d}.118", level, comp, msg


def _angled(rng: random.Random, i: int) -> tuple[str, str, str, str, str]:
    """Level first in angle brackets, a y/M/d date, a bracketed context, a dotted component closed by `-`."""
    level, comp, msg = rng.choice("WIE"), rng.choice(("billing.Ledger", "billing.Pool")), _message(rng)
    line = f"<{level}> 2024/03/12 09:{i // 60 % 60:02d}:{i % 60:02d} [req:{rng.randrange(10**6):06x}] {comp} - {msg}"
    return line, f"2024-03-12T09:{i // 60 % 60:02d}:{i % 60:02d}", level, comp, msg


def _epoch(rng: random.Random, i: int) -> tuple[str, str, str, str, str]:
    """Epoch seconds, a host, `program[pid]:` and the level after it, as `notice:`."""
    level, comp, msg = rng.choice(("notice", "warning", "err")), rng.choice(("relayd", "fetcher")), _message(rng)
    line = f"{1710252301 + i} dn-{rng.randrange(40)} {comp}[{rng.randrange(100, 9999)}]: {level}: {msg}"
    return line, parse_timestamp(str(1710252301 + i)), level, comp, msg


LAYOUTS = {"pipes": _pipes, "angled": _angled, "epoch": _epoch}


@pytest.mark.parametrize("layout", LAYOUTS)
def test_an_unseen_layout_is_learned_and_split_into_fields(tmp_path, layout):
    rng = random.Random(7)
    rows = [LAYOUTS[layout](rng, i) for i in range(300)]
    path = tmp_path / f"{layout}.log"
    path.write_text("\n".join(r[0] for r in rows) + "\n")
    result = ingest([path], data_dir=tmp_path / "data", progress=False, mask=False)
    source = result.manifest["sources"][0]
    assert source["format"] == "induced" and source["confidence"] == 1.0
    assert "<Content>" in source["layout"]
    records = load_records(result.path)
    for record, (line, ts, level, comp, msg) in zip(records, rows, strict=True):
        assert record["timestamp"] == ts, line
        assert record["level_raw"] == level, line
        assert record["level"] is not None
        assert record["component"] == comp, line
        assert record["message"] == msg, line
    # The header's tokens are fields, not words the template miner groups by.
    assert {r["template"] for r in records} == {
        " ".join("<*>" if any(ch.isdigit() or ch == "{" for ch in w) else w for w in m.split()) for m in MESSAGES
    }


def test_the_learned_layout_reads_as_a_log_format_and_names_extra_fields(tmp_path):
    rng = random.Random(1)
    layout = induce([_pipes(rng, i)[0] for i in range(200)])
    assert layout.describe() == r"<Date> <Time>\|<Host>\|<Level>\|<Component>\|<Content>"
    [event] = multiline.events([_pipes(rng, 5)[0]], layout.line_format(), MODIFIED, Counter())
    assert set(event.fields) == {"host"} and event.fields["host"].startswith("edge-")
    angled = induce([_angled(rng, i)[0] for i in range(200)])
    assert angled.describe() == r"<<Level>> <Date> <Time> \[<Req>\] <Component> - <Content>"


@pytest.mark.parametrize("layout", LAYOUTS)
def test_a_learned_layout_given_back_as_log_format_reads_the_same(layout):
    rng = random.Random(5)
    lines = [LAYOUTS[layout](rng, i)[0] for i in range(200)]
    learned = induce(lines).line_format()
    declared, share = line_format(Declared(log_format=induce(lines).describe()), lines, f"{layout}.log")
    assert share == 1.0
    for a, b in zip(*(multiline.events(lines, f, MODIFIED, Counter()) for f in (learned, declared)), strict=True):
        assert (a.timestamp, a.level, a.component, a.message) == (b.timestamp, b.level, b.component, b.message)


def test_stack_traces_join_their_event_and_a_missing_column_is_optional():
    lines = []
    for i in range(100):
        thread = "" if i % 7 == 0 else f"[worker-{i % 3}] "
        lines.append(f"2024-03-12T14:05:{i % 60:02d}.5Z ~ {thread}WARNING ingest.Loader: batch {i} late")
        if i % 10 == 0:
            lines += ["java.lang.IllegalStateException: late", "\tat ingest.Loader.run(Loader.java:42)"]
    layout = induce(lines)
    assert "(\\[<Thread>\\] )?" in layout.describe()
    events = list(multiline.events(lines, layout.line_format(), MODIFIED, Counter()))
    assert len(events) == 100
    assert all(e.level == "WARN" and e.component == "ingest.Loader" for e in events)
    assert events[0].message == (
        "batch 0 late\njava.lang.IllegalStateException: late\n\tat ingest.Loader.run(Loader.java:42)"
    )
    assert events[1].fields == {"thread": "worker-1"} and events[7].fields is None


def test_a_token_only_some_lines_have_before_a_separator_is_an_optional_field():
    rng = random.Random(4)
    lines = [
        f"[03.12 14:05:{i % 60:02d}] {rng.choice(('relayd.exe', 'sync.exe'))}{rng.choice(('', ' *64'))} - "
        f"gw-{rng.randrange(9)}.example.test:5070 open through relay" for i in range(200)
    ]
    layout = induce(lines)
    assert layout.describe() == r"\[<Date> <Time>\] <Component> (<Flag> )?- <Content>"
    events = list(multiline.events(lines, layout.line_format(), MODIFIED, Counter()))
    assert all(e.message.endswith(".example.test:5070 open through relay") for e in events)
    assert {(e.fields or {}).get("flag") for e in events} == {None, "*64"}


def test_nothing_consistent_falls_back_to_plain_lines_or_a_document():
    prose = ["Restart the relay before noon.", "", "Then check the queue depth.", "Call the on-call if it grows."]
    assert induce(prose) is None
    assert choose("notes.txt", prose).format == "document"
    words = [" ".join(random.Random(i).choice(("alpha", "beta", "gamma")) for _ in range(4)) for i in range(50)]
    assert choose("out", words).format == "plain"


def test_a_known_format_stays_unless_the_learned_layout_reads_more():
    log4j = [f"2024-03-12 14:05:{i % 60:02d},118 INFO  [main] com.acme.Api: request {i} served" for i in range(60)]
    assert choose("app.log", log4j).format == "log4j"
    # A Spring Boot line that the log4j format matches, but with the pid and thread left in the message.
    spring = [
        f"2024-03-12 14:05:{i % 60:02d}.118  INFO {4000 + i} --- [main] c.a.Api   : request {i} served"
        for i in range(60)
    ]
    choice = choose("app.log", spring)
    assert choice.format == "induced"
    assert choice.layout == r"<Date> <Time>  <Level> <Pid> --- \[<Thread>\] <Component>: <Content>"


def test_the_layout_and_its_confidence_show_in_the_manifest_and_datasets_show(tmp_path, capsys):
    from mambapoc.cli import main

    rng = random.Random(3)
    (tmp_path / "edge.log").write_text("\n".join(_pipes(rng, i)[0] for i in range(50)) + "\nnot a header line\n")
    main(["ingest", str(tmp_path / "edge.log"), "--data-dir", str(tmp_path / "data")])
    source = read_manifest(tmp_path / "data" / "edge")["sources"][0]
    assert (source["format"], source["confidence"]) == ("induced", 0.98)
    capsys.readouterr()
    main(["datasets", "show", "edge", "--data-dir", str(tmp_path / "data")])
    out = capsys.readouterr().out
    assert "induced" in out and "<Component>" in out and "0.98" in out


@pytest.mark.parametrize(
    "text, iso",
    [
        ("17/06/09 20:10:40", "2017-06-09T20:10:40"),
        ("2015-07-29 17:41:44,747", "2015-07-29T17:41:44.747"),
        ("03-17 16:13:38.811", "2024-03-17T16:13:38.811"),  # no year: the file's
        ("[10.30 16:49:06]", "2023-10-30T16:49:06"),  # a month after the file's date: the year before
        ("2005.06.03", "2005-06-03"),
        ("1117838570", "2005-06-03T22:42:50Z"),
        ("2005-06-03-15.42.50.675872", "2005-06-03T15:42:50.675872"),
        ("Jun 14 15:16:01", "2023-06-14T15:16:01"),
        ("20171223-22:15:29:606", "2017-12-23T22:15:29.606"),
        ("9/28/2016 4:30:30 PM", "2016-09-28T16:30:30"),
        ("28/9/2016 16:30:30", "2016-09-28T16:30:30"),
        ("12-Mar-2024 14:05:01.118", "2024-03-12T14:05:01.118"),
        ("Tue Mar 12 14:05:01 2024", "2024-03-12T14:05:01"),
        ("2024-03-12 14:05:01.118 UTC", "2024-03-12T14:05:01.118Z"),
        ("I0312 14:05:01.118234", "2024-03-12T14:05:01.118234"),
        ("13/13/2024 10:00:00", None),
    ],
)
def test_timestamp_forms(text, iso):
    assert parse_timestamp(text, MODIFIED) == iso
