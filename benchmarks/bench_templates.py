"""Template and header quality on generated logs whose true templates and levels are known.

    python benchmarks/bench_templates.py [--events 4000] [--seed 3] [--workdir DIR] [--keep]

Writes one log per header format (four the code lists, and ten it does not: they must be read by header
induction), each with the same 40 message templates filled with numbers, hex, paths, addresses, ids,
UUIDs, durations and words, plus noise: stack traces after some errors, junk lines, padding that varies,
parts of the header that one line in ten leaves out.
Ingests each file alone (no masking, so that messages can be compared) and reports per format:

- grouping accuracy, the standard log-parsing metric (Zhu et al., ICSE-SEIP 2019): a message counts as
  correct when the set of messages sharing its mined template equals the set sharing its true template;
- level agreement: the share of events whose level is the true one (normalised);
- component agreement and message exactness (the message is exactly the generated one: no header token
  left in it, none of it taken for header), and the share of events with a timestamp.

Junk lines are in the files but not in the scores. The means are over the formats the code does not list
and over all.
"""

from __future__ import annotations

import argparse
import random
import re
import shutil
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

LEVELS = ("DEBUG", "INFO", "WARN", "ERROR")
COMPONENTS = ("org.acme.pool.ConnectionPool", "org.acme.api.OrderController", "org.acme.cache.Store", "org.acme.Auth")
USERS = ("alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi")
WORDS = ("orders", "invoices", "sessions", "carts", "payments", "reports")

# (level, component index, template); slots: {n} number, {ms} duration, {ip}, {port}, {hex}, {uuid},
# {path}, {user}, {word}, {host}, {blk}, {sentence} (two to five words).
TEMPLATES: tuple[tuple[str, int, str], ...] = (
    ("INFO", 0, "Opened connection {n} to {ip}:{port}"),
    ("INFO", 0, "Closed connection {n} after {ms}"),
    ("WARN", 0, "Pool is nearly exhausted: {n} of {n} connections in use"),
    ("ERROR", 0, "Could not open a connection to {ip}:{port}: connection refused"),
    ("DEBUG", 0, "Validating idle connection {n}"),
    ("INFO", 1, "Request {uuid} for {path} served in {ms}"),
    ("INFO", 1, "User {user} placed order {n} worth {n} EUR"),
    ("WARN", 1, "Slow request {uuid} took {ms} on {path}"),
    ("ERROR", 1, "Request {uuid} failed with status {n}"),
    ("INFO", 1, "Listing {word} for user {user}"),
    ("DEBUG", 1, "Parsed {n} query parameters from {path}"),
    ("INFO", 2, "Cache hit for key {hex}"),
    ("INFO", 2, "Cache miss for key {hex}, loading from {path}"),
    ("WARN", 2, "Evicted {n} entries to stay under {n} MB"),
    ("DEBUG", 2, "Refreshing {word} cache every {ms}"),
    ("ERROR", 2, "Cache store at {ip} did not answer within {ms}"),
    ("INFO", 3, "User {user} logged in from {ip}"),
    ("WARN", 3, "Failed login for user {user} from {ip}"),
    ("INFO", 3, "Session {hex} expired for user {user}"),
    ("ERROR", 3, "Token {hex} rejected: signature mismatch"),
    ("DEBUG", 3, "Checking {n} roles of user {user}"),
    ("INFO", 0, "Pool resized from {n} to {n} connections"),
    ("INFO", 1, "Exported {n} {word} to {path}"),
    ("WARN", 1, "Retrying upload of {path} in {ms} (attempt {n})"),
    ("INFO", 2, "Loaded {n} {word} in {ms}"),
    ("INFO", 3, "Password changed for user {user}"),
    ("ERROR", 1, "Payment {uuid} declined by the bank"),
    ("INFO", 0, "Received block {blk} of size {n} from {ip}"),
    ("INFO", 0, "Deleted block {blk} from {path}"),
    ("WARN", 0, "Block {blk} is under-replicated: {n} of {n} replicas"),
    ("INFO", 2, "Scheduled compaction of {word} on {host}"),
    ("INFO", 2, "Compaction of {word} on {host} finished in {ms}"),
    ("ERROR", 2, "Disk {path} on {host} is full"),
    ("INFO", 3, "Granted role admin to user {user}"),
    ("INFO", 1, "Health check passed for {host}"),
    ("WARN", 1, "Health check failed for {host}: {n} errors"),
    ("DEBUG", 0, "Heartbeat from {host} at {ip}"),
    ("INFO", 1, "Shutting down worker {n}"),
    ("INFO", 1, "Starting worker {n} with {n} threads"),
    ("ERROR", 3, "Directory lookup for user {user} timed out after {ms}"),
    # Two templates one word apart, which must stay apart.
    ("INFO", 1, "Worker {n} started"),
    ("INFO", 1, "Worker {n} stopped"),
    # Variables without a digit, two of them, and one of varying length (what Drain cannot group).
    ("INFO", 2, "Query on {word} by {user} returned {n} rows"),
    ("WARN", 1, 'Unknown option "{word}" ignored'),
    ("ERROR", 1, "Command failed: {sentence}"),
)


def _values(rng: random.Random) -> dict[str, Callable[[], str]]:
    return {
        "n": lambda: str(rng.choice((rng.randrange(10), rng.randrange(1000), rng.randrange(10**6)))),
        "ms": lambda: rng.choice((f"{rng.randrange(1, 5000)}ms", f"{rng.uniform(0.1, 30):.2f}s")),
        "ip": lambda: f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}",
        "port": lambda: str(rng.randrange(1024, 65535)),
        "hex": lambda: f"{rng.getrandbits(64):016x}",
        "uuid": lambda: "-".join(f"{rng.getrandbits(b * 4):0{b}x}" for b in (8, 4, 4, 4, 12)),
        "path": lambda: "/" + "/".join(rng.choice(("srv", "data", "var", "tmp", "exports", "api", "v1", "v2"))
                                       for _ in range(rng.randrange(2, 5))),
        "user": lambda: rng.choice(USERS),
        "word": lambda: rng.choice(WORDS),
        "host": lambda: f"node-{rng.randrange(40)}",
        "blk": lambda: f"blk_{rng.getrandbits(40)}",
        "sentence": lambda: " ".join(rng.choice(WORDS + USERS) for _ in range(rng.randrange(2, 6))),
    }


@dataclass
class Event:
    when: float
    level: str
    component: str
    pid: int
    tid: int
    thread: str
    host: str
    # False on one line in ten: formats with an optional part leave it out (noise a layout must allow).
    full: bool


def _t(when: float, fmt: str) -> str:
    return time.strftime(fmt, time.gmtime(when))


def _ms(when: float) -> str:
    return f"{int(when * 1000) % 1000:03d}"


_ANDROID = {"DEBUG": "D", "INFO": "I", "WARN": "W", "ERROR": "E"}
_PYTHON = {"DEBUG": "DEBUG", "INFO": "INFO", "WARN": "WARNING", "ERROR": "ERROR"}
_CBS = {"DEBUG": "Debug", "INFO": "Info", "WARN": "Warning", "ERROR": "Error"}
_SHORT = {c: c.rsplit(".", 1)[1] for c in COMPONENTS}

# name, listed in the code's formats, header(event) → text before the message (and after it, if any).
FORMATS: tuple[tuple[str, bool, Callable[[Event], tuple[str, str]]], ...] = (
    ("log4j", True, lambda e: (f"{_t(e.when, '%Y-%m-%d %H:%M:%S')},{_ms(e.when)} {e.level:<5} "
                               f"[{e.thread}] {e.component}: ", "")),
    ("android", True, lambda e: (f"{_t(e.when, '%m-%d %H:%M:%S')}.{_ms(e.when)} {e.pid:>5} {e.tid:>5} "
                                 f"{_ANDROID[e.level]} {_SHORT[e.component]}: ", "")),
    ("zookeeper", True, lambda e: (f"{_t(e.when, '%Y-%m-%d %H:%M:%S')},{_ms(e.when)} - {e.level:<5} "
                                   f"[{e.thread}:{_SHORT[e.component]}@{e.pid % 900}] - ", "")),
    ("windows-cbs", True, lambda e: (f"{_t(e.when, '%Y-%m-%d %H:%M:%S')}, {_CBS[e.level]:<22}"
                                     f"{_SHORT[e.component][:4]:<7}", "")),
    ("python-logging", False, lambda e: (f"{_t(e.when, '%Y-%m-%d %H:%M:%S')},{_ms(e.when)} - {e.component} - "
                                         f"{_PYTHON[e.level]} - ", "")),
    ("elastic-like", False, lambda e: (f"[{_t(e.when, '%Y-%m-%dT%H:%M:%S')},{_ms(e.when)}][{e.level:<5}]"
                                       f"[{e.component:<30}] " + (f"[{e.host}] " if e.full else ""), "")),
    ("glog", False, lambda e: (f"{e.level[0]}{_t(e.when, '%m%d %H:%M:%S')}.{_ms(e.when)}123 {e.pid:>7} "
                               f"{_SHORT[e.component].lower()}.go:{e.tid % 400}] ", "")),
    ("pipe-delimited", False, lambda e: (f"{_t(e.when, '%Y%m%d-%H:%M:%S')}:{_ms(e.when)}|{_SHORT[e.component]}|"
                                         f"{e.pid}|{e.level}|", "")),
    ("epoch-host", False, lambda e: (f"{e.when:.3f} {e.host} {e.level.lower()} {_SHORT[e.component].lower()}"
                                     + (f"[{e.pid}]: " if e.full else ": "), "")),
    ("us-date", False, lambda e: (f"{_t(e.when, '%-m/%-d/%Y %-I:%M:%S %p')} [{e.level}] {_SHORT[e.component]}: ",
                                  "")),
    ("tomcat-like", False, lambda e: (f"{_t(e.when, '%d-%b-%Y %H:%M:%S')}.{_ms(e.when)} {_PYTHON[e.level]} "
                                      f"[{e.thread}] {e.component}.run ", "")),
    ("kafka-like", False, lambda e: (f"[{_t(e.when, '%Y-%m-%d %H:%M:%S')},{_ms(e.when)}] {e.level} ",
                                     f" ({e.component})")),
    ("spring-boot", False, lambda e: (f"{_t(e.when, '%Y-%m-%d %H:%M:%S')}.{_ms(e.when)} {e.level:>5} {e.pid} --- "
                                      f"[{e.thread:>15}] {e.component:<40} : ", "")),
    ("dotted-date", False, lambda e: (f"[{_t(e.when, '%d.%m.%Y %H:%M:%S')}] <{e.level[0]}> "
                                      f"{_SHORT[e.component]} - ", "")),
)
_SLOT = re.compile(r"\{(\w+)\}")
_STACK = ("java.lang.IllegalStateException: {word} not ready", "\tat org.acme.Worker.run(Worker.java:{n})",
          "\tat java.base/java.lang.Thread.run(Thread.java:833)")


@dataclass
class Truth:
    template: int
    level: str
    component: str
    message: str


def generate(path: Path, header: Callable[[Event], tuple[str, str]], events: int, seed: int) -> dict[int, Truth]:
    """Writes the log; returns the truth of each event by its first line (junk lines have none)."""
    rng = random.Random(seed)
    values = _values(rng)
    when = 1_710_252_301.0
    truth: dict[int, Truth] = {}
    lines: list[str] = []
    for _ in range(events):
        if rng.random() < 0.01:
            lines.append(" ".join(rng.choice(WORDS + USERS) for _ in range(rng.randrange(2, 6))))
        when += rng.random() * 2
        index = rng.randrange(len(TEMPLATES))
        level, comp, template = TEMPLATES[index]
        message = _SLOT.sub(lambda m: values[m[1]](), template)
        ev = Event(when, level, COMPONENTS[comp], rng.randrange(100, 30000), rng.randrange(100, 30000),
                   rng.choice(("main", "worker-1", "worker-2", "http-exec-7")), values["host"](), rng.random() > 0.1)
        head, tail = header(ev)
        lines.append(head + message + tail)
        truth[len(lines)] = Truth(index, level, COMPONENTS[comp], message)
        if level == "ERROR" and rng.random() < 0.2:
            lines += [s.format(word=values["word"](), n=values["n"]()) for s in _STACK]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return truth


def grouping_accuracy(pairs: list[tuple[object, object]]) -> float:
    """pairs of (mined template, true template): the share of messages whose mined group is exactly their
    true group. A message with no mined template is wrong."""
    true_sizes = Counter(t for _, t in pairs)
    groups: dict[object, list[object]] = defaultdict(list)
    for mined, t in pairs:
        groups[mined].append(t)
    correct = 0
    for mined, members in groups.items():
        labels = set(members)
        if mined is not None and len(labels) == 1 and true_sizes[members[0]] == len(members):
            correct += len(members)
    return correct / len(pairs)


def _same_component(found: str | None, true: str) -> bool:
    """The formats write the component whole, by its class name, lower-cased or cut: any of these counts."""
    if not found:
        return False
    found, true = found.lower(), true.lower()
    return found in true or true.rsplit(".", 1)[1] in found


def score(data_dir: Path, path: Path, truth: dict[int, Truth]) -> dict:
    from mambapoc.ingest import ingest
    from mambapoc.ingest.dataset import iter_records
    from mambapoc.ingest.fields import normalize_level

    result = ingest([path], name=path.stem, data_dir=data_dir, mask=False, progress=False, force=True)
    pairs, level, component, exact, stamped, n = [], 0, 0, 0, 0, 0
    for r in iter_records(result.path):
        t = truth.get(r["line"])
        if t is None:
            continue
        n += 1
        pairs.append((r["template_id"], t.template))
        level += r["level"] == normalize_level(t.level)
        component += _same_component(r["component"], t.component)
        exact += r["message"].split("\n")[0] == t.message
        stamped += r["timestamp"] is not None
    source = result.manifest["sources"][0]
    return {
        "detected": source["format"],
        "layout": source.get("layout", ""),
        "events": n,
        "grouping": grouping_accuracy(pairs),
        "level": level / n,
        "component": component / n,
        "message": exact / n,
        "timestamp": stamped / n,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=4000, help="events per format")
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()))
    parser.add_argument("--keep", action="store_true", help="keep the generated logs and datasets")
    parser.add_argument("--show-layouts", action="store_true", help="print the layout learned for each")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="mambapoc-bench-templates-", dir=args.workdir))
    rows = []
    try:
        for i, (name, listed, header) in enumerate(FORMATS):
            path = work / f"{name}.log"
            truth = generate(path, header, args.events, args.seed + i)
            r = score(work / "data", path, truth)
            rows.append((name, listed, r))
            print(
                f"{name:<15} {'listed' if listed else 'unseen':<6} {r['detected']:<11} {r['events']:>6}  "
                f"grouping {r['grouping']:.3f}  level {r['level']:.3f}  component {r['component']:.3f}  "
                f"message {r['message']:.3f}  timestamp {r['timestamp']:.3f}",
                flush=True,
            )
            if args.show_layouts and r["layout"]:
                print(f"{'':<23}{r['layout']}")
        for label, chosen in (("mean, unseen", [r for _, listed, r in rows if not listed]),
                              ("mean, all", [r for _, _, r in rows])):
            means = {k: sum(r[k] for r in chosen) / len(chosen) for k in ("grouping", "level", "component",
                                                                          "message", "timestamp")}
            print(f"{label:<34}        grouping {means['grouping']:.3f}  level {means['level']:.3f}  "
                  f"component {means['component']:.3f}  message {means['message']:.3f}  "
                  f"timestamp {means['timestamp']:.3f}")
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    print(f"python {sys.version.split()[0]}")


if __name__ == "__main__":
    main()
