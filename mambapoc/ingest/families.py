"""Log families that one regular expression describes, as data: the groups `ts`, `level`, `component` and
`msg` are the record's fields, every other named group an extra field (see formats.named). Formats that
need code (syslog's priority, an access log's status as a level) are in formats.py; whatever no entry
matches well is left to header induction (induce.py)."""

from __future__ import annotations

from dataclasses import replace

from mambapoc.ingest.formats import HAND_WRITTEN, LineFormat, named

_DATE = r"\d{4}-\d\d-\d\d"
_TIME = r"\d\d:\d\d:\d\d"

# name, header, whether a line that does not match belongs to the event before it.
TABLE: tuple[tuple[str, str, bool], ...] = (
    (
        # `adb logcat -v threadtime` (and `-v year`): 03-17 16:13:38.811  1702  2395 D Tag: msg
        "android",
        rf"(?P<ts>(?:\d{{4}}-)?\d\d-\d\d {_TIME}\.\d{{3}}) +(?P<pid>\d+) +(?P<tid>\d+) (?P<level>[VDIWEFA]) "
        r"(?P<component>.*?) *:(?: |$)(?P<msg>.*)",
        False,
    ),
    (
        # 2015-07-29 17:41:44,747 - INFO  [thread:Class@line] - msg
        "zookeeper",
        rf"(?P<ts>{_DATE} {_TIME},\d{{3}}) - (?P<level>[A-Z]+) +"
        r"\[(?P<thread>(?:[^\[\]]|\[[^\[\]]*\])*?)(?::(?P<component>[\w$.]+)@(?P<line>\d+))?\] - (?P<msg>.*)",
        True,
    ),
    (
        # oslo.log, with the file name some collectors put first:
        # nova-api.log.1 2017-05-16 00:00:00.008 25746 INFO nova.osapi.server [req-… user tenant] msg
        "openstack",
        rf"(?:(?P<file>\S+\.log\S*) )?(?P<ts>{_DATE} {_TIME}(?:\.\d+)?) (?P<pid>\d+) (?P<level>[A-Z]+) "
        r"(?P<component>[\w.]+) (?:\[(?P<context>[^\]]*)\] ?)?(?P<msg>.*)",
        False,
    ),
    (
        # Windows CBS.log: 2016-09-28 04:30:30, Info                  CBS    msg
        "windows-cbs",
        rf"(?P<ts>{_DATE} {_TIME}), (?P<level>[A-Z][a-z]+) +(?P<component>\S+) +(?P<msg>.*)",
        False,
    ),
    (
        # Blue Gene/L RAS: alert epoch date node yyyy-MM-dd-HH.mm.ss.SSSSSS node RAS KERNEL INFO msg
        "bgl",
        r"(?P<alert>\S+) \d{9,10} \d{4}\.\d\d\.\d\d (?P<node>\S+) "
        r"(?P<ts>\d{4}-\d\d-\d\d-\d\d\.\d\d\.\d\d\.\d+) \S+ (?P<type>[A-Z]+) (?P<component>[A-Z_]+) "
        r"(?P<level>[A-Z]+) (?P<msg>.*)",
        False,
    ),
    (
        # nginx error log: 2023/10/06 00:17:09 [error] 1234#5678: *99 msg
        "nginx-error",
        rf"(?P<ts>\d{{4}}/\d\d/\d\d {_TIME}) \[(?P<level>[a-z]+)\] (?P<pid>\d+)#(?P<tid>\d+): "
        r"(?:\*(?P<connection>\d+) )?(?P<msg>.*)",
        False,
    ),
    (
        # Kubernetes container logs (CRI): 2023-10-06T00:17:09.669794202Z stdout F msg
        "cri",
        rf"(?P<ts>{_DATE}T{_TIME}(?:\.\d+)?(?:Z|[+-]\d\d:\d\d)) (?P<stream>stdout|stderr) (?P<tag>[FP]) "
        r"(?P<msg>.*)",
        False,
    ),
)

FAMILIES = {name: named(name, header, joins) for name, header, joins in TABLE}
# The container runtime writes a long output line as pieces tagged P, its last piece F.
FAMILIES["cri"] = replace(FAMILIES["cri"], piece=lambda m: (m["stream"], m["tag"] == "P"))
# Families first: a family's line often also fits a looser hand-written format (a CRI line is a syslog line
# whose host is `stdout`), and detection takes the first of equal scores.
LINE_FORMATS: dict[str, LineFormat] = {**FAMILIES, **HAND_WRITTEN}
