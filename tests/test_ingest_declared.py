"""Formats the user declares: `--log-format` placeholders, `--log-regex` groups, per path in a recipe, and the
error when a declared format does not fit the file."""

from __future__ import annotations

from collections import Counter
from datetime import date

import pytest

from mambapoc.errors import UserError
from mambapoc.ingest import ingest, multiline
from mambapoc.ingest.dataset import load_records, read_manifest
from mambapoc.ingest.declared import Declared, line_format
from mambapoc.recipe import load_recipe

MODIFIED = date(2024, 3, 14)
RELAY = (
    "Mar 12 14:05:01 gw-2 relayd[4412]: WARN link 3 flapping\n"
    "Mar 12 14:05:02 gw-2 relayd: INFO link 3 stable again\n"
    "Mar 12 14:05:09 gw-3 relayd[4413]: ERROR uplink lost\n"
)


def _events(declared: Declared, text: str):
    lines = text.splitlines()
    parser, share = line_format(declared, lines, "relay.log")
    return list(multiline.events(lines, parser, MODIFIED, Counter())), share


def test_log_format_placeholders_roles_extra_fields_and_an_optional_part():
    events, share = _events(
        Declared(log_format=r"<Month> <Day> <Time> <Host> <Program>(\[<Pid>\])?: <Level> <Content>"), RELAY
    )
    assert share == 1.0
    assert [e.timestamp for e in events] == ["2024-03-12T14:05:01", "2024-03-12T14:05:02", "2024-03-12T14:05:09"]
    assert [e.level for e in events] == ["WARN", "INFO", "ERROR"]
    assert {e.component for e in events} == {"relayd"}
    assert [e.message for e in events] == ["link 3 flapping", "link 3 stable again", "uplink lost"]
    assert events[0].fields == {"host": "gw-2", "pid": "4412"} and events[1].fields == {"host": "gw-2"}


def test_log_format_content_need_not_be_last_and_the_timestamp_is_the_run_that_reads():
    text = "1710252301 2024.03.12 node-4 2024-03-12-14.05.01.118 KERNEL WARNING cache flushed (pool.Cache)\n"
    fmt = r"<Epoch> <Date> <Node> <Time> <Component> <Level> <Content> \(<Logger>\)"
    [ev], _ = _events(Declared(log_format=fmt), text)
    # <Date> and <Time> do not read together; <Time> alone is the most telling of those that do.
    assert ev.timestamp == "2024-03-12T14:05:01.118"
    assert (ev.component, ev.level, ev.message) == ("KERNEL", "WARN", "cache flushed")
    assert ev.fields == {"epoch": "1710252301", "node": "node-4", "logger": "pool.Cache"}


def test_log_regex_named_groups_and_the_rest_of_the_line_as_message():
    regex = r"(?P<ts>\w{3} \d+ [\d:]+) (?P<host>\S+) (?P<component>\w+)(?:\[\d+\])?: (?P<level>[A-Z]+)"
    events, _ = _events(Declared(log_regex=regex), RELAY)
    assert [e.message for e in events] == ["link 3 flapping", "link 3 stable again", "uplink lost"]
    assert events[2].fields == {"host": "gw-3"} and events[2].level == "ERROR"
    with_message = r"(?P<ts>\S+ \S+ \S+) \S+ (?P<message>.*)"
    [first, *_], _ = _events(Declared(log_regex=with_message), RELAY)
    assert first.message == "relayd[4412]: WARN link 3 flapping" and first.timestamp == "2024-03-12T14:05:01"


def test_a_declared_format_matching_under_half_the_lines_is_an_error_showing_two(tmp_path, cli):
    (tmp_path / "relay.log").write_text(RELAY)
    with pytest.raises(UserError) as caught:
        ingest([tmp_path / "relay.log"], data_dir=tmp_path / "data", progress=False,
               log_format="<Date> <Time> [<Level>] <Content>")
    message = str(caught.value)
    assert "relay.log: --log-format matches 0 of 3 lines, under half" in message
    assert "line 1: 'Mar 12 14:05:01 gw-2 relayd[4412]: WARN link 3 flapping'" in message
    assert "line 2: " in message and "line 3" not in message
    code = cli("ingest", str(tmp_path / "relay.log"), "--data-dir", str(tmp_path / "data"),
                "--log-regex", r"(?P<ts>\d{4}-\d\d-\d\d) (?P<message>.*)")
    assert code[0] == 1 and code[2].count("\n") == 1 and "--log-regex matches 0 of 3 lines" in code[2]
    assert not (tmp_path / "data").exists()


@pytest.mark.parametrize(
    "kwargs, error",
    [
        ({"log_format": "<Date> <Content>", "log_regex": ".*"}, "not both"),
        ({"log_format": "no placeholders"}, "has no <Placeholder>"),
        ({"log_format": "<Level> <Level> <Content>"}, "<Level> appears twice"),
        ({"log_regex": "(?P<ts>"}, "not a valid regular expression"),
        ({"log_format": "<Date> <Content>", "fmt": "syslog"}, "exclude each other"),
    ],
)
def test_bad_declarations_are_errors_before_any_work(tmp_path, kwargs, error):
    (tmp_path / "relay.log").write_text(RELAY)
    with pytest.raises(UserError, match=error):
        ingest([tmp_path / "relay.log"], data_dir=tmp_path / "data", progress=False, **kwargs)
    assert not (tmp_path / "data").exists()


def test_the_cli_options_and_the_manifest(tmp_path, cli):
    (tmp_path / "relay.log").write_text(RELAY)
    fmt = r"<Month> <Day> <Time> <Host> <Program>(\[<Pid>\])?: <Level> <Content>"
    code, _, _ = cli("ingest", str(tmp_path / "relay.log"), "--data-dir", str(tmp_path / "data"),
                      "--log-format", fmt)
    assert code == 0
    m = read_manifest(tmp_path / "data" / "relay")
    source = m["sources"][0]
    assert (source["format"], source["confidence"], source["layout"]) == ("declared", 1.0, fmt)
    assert m["options"]["log_format"] == fmt
    records = load_records(tmp_path / "data" / "relay")
    assert records[0]["fields"] == {"host": "gw-2", "pid": "4412"} and records[0]["component"] == "relayd"
    _, out, _ = cli("datasets", "show", "relay", "--data-dir", str(tmp_path / "data"))
    assert f"Layout of relay.log (declared): {fmt}" in out


def test_per_path_formats_in_a_recipe(tmp_path):
    (tmp_path / "gw").mkdir()
    (tmp_path / "gw" / "relay.log").write_text(RELAY)
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "app.log").write_text("2024-03-12 14:05:01,118 INFO [main] a.B: started\n")
    (tmp_path / "r.yaml").write_text(
        "name: t\n"
        "ingest:\n"
        "  paths:\n"
        "    - {path: gw, log_format: '<Month> <Day> <Time> <Host> <Program>(\\[<Pid>\\])?: <Level> <Content>'}\n"
        "    - app\n"
        "compare: {models: [bundled:mamba-tiny], lengths: [256], tasks: [needle]}\n"
    )
    recipe = load_recipe(tmp_path / "r.yaml")
    assert recipe.ingest.paths == [tmp_path / "gw", tmp_path / "app"]
    assert list(recipe.ingest.path_formats) == [tmp_path / "gw"]
    result = ingest(recipe.ingest.paths, data_dir=tmp_path / "data", progress=False, **recipe.ingest.options())
    formats = {s["path"]: s["format"] for s in result.manifest["sources"]}
    assert formats == {"gw/relay.log": "declared", "app/app.log": "log4j"}
    (tmp_path / "bad.yaml").write_text("ingest:\n  paths: [{path: gw, log_regex: '(?P<x'}]\n")
    with pytest.raises(UserError, match=r"ingest\.paths\[0\]\.log_regex: --log-regex"):
        load_recipe(tmp_path / "bad.yaml")
