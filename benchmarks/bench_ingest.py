"""Ingest throughput and memory, beside drain3 alone on the same lines.

    python benchmarks/bench_ingest.py --sizes 200 400 [--workdir DIR] [--keep]

Generates a log4j-style application log of each size (MB) in a new folder under DIR (the system's temporary
folder by default), then, each in a fresh process so that
peak RSS is its own: `mambapoc.ingest.ingest` on the file (detection, masking, template mining, writing the
dataset); ingest's template miner alone fed the file's lines; and drain3's TemplateMiner fed the same lines
(both mining only, nothing written). Prints records (or lines)/s, MB/s and peak RSS for each. The new
folder is deleted at the end unless --keep. drain3 is optional
(`pip install drain3`); without it, it is left out.

A memory bound shows as the same peak RSS at both sizes: request lines carry a new trace id each, so the
distinct values to mask grow with the input.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

EVENTS = (
    (
        "INFO",
        "com.acme.api.RequestLogger",
        "request_id={rid} method={method} path=/api/v1/{res}/{n} user={email} "
        "status={status} latency_ms={ms} trace_id={trace}",
    ),
    ("INFO", "com.acme.cart.CartService", "cart {n} updated for user={email} sku=SKU-{n} qty={small}"),
    (
        "INFO",
        "com.acme.pay.PaymentClient",
        "authorize order=ORD-{n} amount={amount} currency=EUR result=approved latency_ms={ms} client={ip}",
    ),
    ("DEBUG", "com.acme.cache.RedisCache", "cache {hit} for key product:{n} in {small} ms"),
    ("WARN", "com.acme.db.OrderRepository", "slow query took {ms} ms: SELECT * FROM {res} WHERE id = ?"),
    ("INFO", "com.acme.auth.LoginService", "user {email} logged in from {ip} with {method2}"),
    ("WARN", "com.acme.auth.LoginService", "failed login for {email} from {ip}: {reason}"),
    ("ERROR", "com.acme.api.OrderController", "request_id={rid} status=500 failed: {exc}"),
)
STACK = (
    "\tat com.acme.service.OrderService.place(OrderService.java:{n})\n"
    "\tat com.acme.api.OrderController.create(OrderController.java:88)\n"
    "\tat java.base/java.lang.Thread.run(Thread.java:1583)"
)


def generate(path: Path, megabytes: int, seed: int = 7) -> None:
    """A log of about `megabytes` MB: 8 event types over ~200 resources, 20k users, 50k client addresses,
    a fresh trace id per request line, and a stack trace after each error."""
    rng = random.Random(seed)
    users = [f"user{i}@example.com" for i in range(20_000)]
    ips = [f"10.{i // 65536 % 256}.{i // 256 % 256}.{i % 256}" for i in range(50_000)]
    resources = [f"res{i}" for i in range(200)]
    target = megabytes * 1_000_000
    written = 0
    t = 1_710_115_200.0  # 2024-03-11
    with open(path, "w", encoding="utf-8") as f:
        while written < target:
            batch = []
            for _ in range(10_000):
                t += rng.random() * 0.05
                level, logger, template = EVENTS[rng.randrange(len(EVENTS))]
                msg = template.format(
                    rid=f"{rng.getrandbits(48):012x}",
                    method=rng.choice(("GET", "POST", "PUT")),
                    res=rng.choice(resources),
                    n=rng.randrange(100_000),
                    email=rng.choice(users),
                    status=rng.choice((200, 200, 201, 404)),
                    ms=rng.randrange(2, 3000),
                    trace=f"{rng.getrandbits(128):032x}",
                    small=rng.randrange(1, 9),
                    amount=f"{rng.uniform(5, 500):.2f}",
                    ip=rng.choice(ips),
                    hit=rng.choice(("hit", "miss")),
                    method2=rng.choice(("password", "sso", "passkey")),
                    reason=rng.choice(("bad password", "account locked", "expired token")),
                    exc=rng.choice(
                        (
                            "java.sql.SQLTransientConnectionException: pool exhausted",
                            "java.lang.IllegalStateException: cart is empty",
                        )
                    ),
                )
                stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(t)) + f",{int(t * 1000) % 1000:03d}"
                line = f"{stamp} {level:<5} [http-nio-8080-exec-{rng.randrange(1, 40)}] {logger}: {msg}\n"
                if level == "ERROR":
                    line += STACK.format(n=rng.randrange(40, 200)) + "\n"
                batch.append(line)
            chunk = "".join(batch)
            f.write(chunk)
            written += len(chunk)


def _peak_rss_mb() -> float:
    # ru_maxrss is in KiB on Linux, in bytes on macOS.
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (1 << 20) if sys.platform == "darwin" else rss / 1024


def child_ingest(path: Path, data_dir: Path) -> dict:
    from mambapoc.ingest import ingest

    start = time.perf_counter()
    result = ingest([path], name="bench", data_dir=data_dir, force=True, progress=False)
    return {
        "records": result.records,
        "unit": "records",
        "seconds": time.perf_counter() - start,
        "templates": result.manifest["templates"]["count"],
    }


def _mine_lines(path: Path, add) -> tuple[int, float]:
    start = time.perf_counter()
    lines = 0
    with open(path, encoding="utf-8") as f:
        for line in f:
            add(line.rstrip("\n"))
            lines += 1
    return lines, time.perf_counter() - start


def child_miner(path: Path) -> dict:
    from mambapoc.ingest.templates import TemplateMiner

    miner = TemplateMiner()
    lines, seconds = _mine_lines(path, miner.add)
    return {"records": lines, "unit": "lines", "seconds": seconds, "templates": len(miner.clusters)}


def child_drain3(path: Path) -> dict:
    from drain3 import TemplateMiner
    from drain3.template_miner_config import TemplateMinerConfig

    config = TemplateMinerConfig()
    config.profiling_enabled = False
    miner = TemplateMiner(config=config)
    lines, seconds = _mine_lines(path, miner.add_log_message)
    return {"records": lines, "unit": "lines", "seconds": seconds, "templates": len(miner.drain.clusters)}


def measure(kind: str, path: Path, data_dir: Path) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--child", kind, str(path), str(data_dir)],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[200, 400], help="input sizes in MB")
    parser.add_argument(
        "--workdir", type=Path, default=Path(tempfile.gettempdir()), help="where the work folder is made"
    )
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    parser.add_argument("--child", nargs=3, metavar=("KIND", "PATH", "DATA_DIR"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, path, data_dir = args.child
        children = {
            "ingest": lambda: child_ingest(Path(path), Path(data_dir)),
            "miner": lambda: child_miner(Path(path)),
            "drain3": lambda: child_drain3(Path(path)),
        }
        result = children[kind]()
        result["peak_rss_mb"] = _peak_rss_mb()
        print(json.dumps(result))
        return
    kinds = ["ingest", "miner"]
    if importlib.util.find_spec("drain3") is not None:
        kinds.append("drain3")
    else:
        print("drain3 is not installed: left out (pip install drain3 for the comparison)")
    work = Path(tempfile.mkdtemp(prefix="mambapoc-bench-ingest-", dir=args.workdir))
    try:
        for size in args.sizes:
            path = work / f"app-{size}mb.log"
            generate(path, size)
            mb = path.stat().st_size / 1e6
            for kind in kinds:
                r = measure(kind, path, work / "data")
                print(
                    f"{kind:>7} {mb:7.1f} MB  {r['records']:>10,} {r['unit']:<7}  {r['seconds']:7.1f} s  "
                    f"{r['records'] / r['seconds']:>9,.0f} {r['unit']}/s  {mb / r['seconds']:6.2f} MB/s  "
                    f"peak RSS {r['peak_rss_mb']:6.0f} MB  {r['templates']:,} templates",
                    flush=True,
                )
            if not args.keep:
                path.unlink()
                shutil.rmtree(work / "data", ignore_errors=True)
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
