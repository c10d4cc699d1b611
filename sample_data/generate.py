"""Writes the sample data under sample_data/: three days (11-13 March 2024) of an online shop's logs, a
labelled ticket export and a few runbooks and incident reports.

    python sample_data/generate.py [OUT_DIR]     (default: next to this script)

Standard library only, seeded: every run writes the same bytes. All names, addresses, keys and card
numbers are invented (documentation IP ranges, example.com/example.net, well-known test card numbers,
keys in the shape of real ones so that masking has work to do).

The story the files tell together, for tasks to ask about:
- INC-2041, 12 March 14:05-14:29 UTC: release 2.14.0 of checkout exhausts its database pool; checkout
  answers 500/503, nginx 502/504, payments times out; rolled back to 2.13.2 at 14:29.
- 11 March 16:20-16:40: payments logs full card numbers at debug level (a PCI leak).
- 11 March 21:00-21:10: a scanner probes the admin portal (Apache error log).
- 12 March 09:00-09:15: datanode dn-07 runs out of disk (HDFS logs).
- 13 March 02:10-02:40: SSH brute force on bastion-1 from 203.0.113.45.
"""

from __future__ import annotations

import base64
import csv
import gzip
import io
import json
import random
import sys
import zipfile
from datetime import datetime, timedelta
from pathlib import Path

SEED = 20240311
START = datetime(2024, 3, 11)
DAYS = 3
ROOT = Path(__file__).resolve().parent

INCIDENT = (datetime(2024, 3, 12, 14, 5), datetime(2024, 3, 12, 14, 29))
PCI_LEAK = (datetime(2024, 3, 11, 16, 20), datetime(2024, 3, 11, 16, 40))
SCAN = (datetime(2024, 3, 11, 21, 0), datetime(2024, 3, 11, 21, 10))
DISK_FULL = (datetime(2024, 3, 12, 9, 0), datetime(2024, 3, 12, 9, 15))
BRUTE_FORCE = (datetime(2024, 3, 13, 2, 10), datetime(2024, 3, 13, 2, 40))
RELEASES = (
    (START, "2.13.2"),
    (datetime(2024, 3, 12, 13, 58), "2.14.0"),
    (datetime(2024, 3, 12, 14, 29), "2.13.2"),
)

FIRST = (
    "jane",
    "omar",
    "li",
    "sofia",
    "lukas",
    "amara",
    "kenji",
    "priya",
    "mateo",
    "chloe",
    "yusuf",
    "hanna",
    "diego",
    "fatima",
    "noah",
    "elena",
    "arjun",
    "mei",
    "tomas",
    "zara",
)
LAST = (
    "doe",
    "haddad",
    "wei",
    "rossi",
    "becker",
    "okafor",
    "sato",
    "nair",
    "garcia",
    "martin",
    "demir",
    "nowak",
    "silva",
    "khan",
    "jensen",
    "petrov",
    "iyer",
    "chen",
    "novak",
    "ali",
)
TEST_CARDS = ("4111 1111 1111 1111", "5555 5555 5555 4444", "4012 8888 8888 1881", "3782 822463 10005")
AGENTS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/122.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_3) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.3 Safari/605.1.15",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_3 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148",
    "AcmeShop/4.2.0 (Android 14; Pixel 8)",
    "python-requests/2.31.0",
)


class World:
    """Shared invented entities, so that the same user, address or request appears in several files."""

    def __init__(self, rng: random.Random):
        self.rng = rng
        self.users = [f"{f}.{ln}@example.com" for f in FIRST for ln in LAST[:6]]
        self.clients = [f"198.51.100.{i}" for i in range(10, 60)] + [f"192.0.2.{i}" for i in range(20, 50)]
        self.clients_v6 = [f"2001:db8:4a1::{i:x}" for i in range(0x10, 0x30)]
        self.tokens = [self.hex(40) for _ in range(5)]

    def hex(self, n: int) -> str:
        return "".join(self.rng.choice("0123456789abcdef") for _ in range(n))

    def b64(self, n: int) -> str:
        return "".join(
            self.rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")
            for _ in range(n)
        )

    def jwt(self, user: str, at: datetime) -> str:
        def part(obj: dict) -> str:
            return (
                base64.urlsafe_b64encode(json.dumps(obj, separators=(",", ":")).encode()).decode().rstrip("=")
            )

        exp = int((at - datetime(1970, 1, 1)).total_seconds()) + 3600
        return f"{part({'alg': 'HS256', 'typ': 'JWT'})}.{part({'sub': user, 'exp': exp})}.{self.b64(43)}"

    def times(self, n: int, start: datetime = START, end: datetime | None = None) -> list[datetime]:
        end = end or START + timedelta(days=DAYS)
        span = (end - start).total_seconds()
        return sorted(start + timedelta(seconds=self.rng.random() * span) for _ in range(n))


def in_window(t: datetime, window: tuple[datetime, datetime]) -> bool:
    return window[0] <= t < window[1]


def release_at(t: datetime) -> str:
    return [v for since, v in RELEASES if since <= t][-1]


def ms(t: datetime) -> str:
    return f"{t:%Y-%m-%d %H:%M:%S},{t.microsecond // 1000:03d}"


def write_text(path: Path, lines: list[str], newline: str = "\n", encoding: str = "utf-8") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding=encoding, newline=newline) as f:
        f.write("\n".join(lines) + "\n")


def write_gzip(path: Path, lines: list[str], mtime: datetime | None = None) -> None:
    """A gzip file as logrotate leaves it; `mtime` goes in the header (RFC 3164 syslog takes its year
    from it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    stamp = int((mtime - datetime(1970, 1, 1)).total_seconds()) if mtime else 0
    with open(path, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=stamp) as gz:
        gz.write(("\n".join(lines) + "\n").encode())


# --- requests: one stream seen by nginx, checkout and payments ------------------------------------------

API = (
    ("GET", "/api/v1/products", 30),
    ("GET", "/api/v1/products/{sku}", 25),
    ("GET", "/api/v1/cart", 15),
    ("POST", "/api/v1/cart/items", 12),
    ("POST", "/api/v1/orders", 8),
    ("GET", "/api/v1/orders/{order}", 6),
    ("POST", "/api/v1/payments", 6),
    ("GET", "/api/v1/search?q={query}", 10),
)
QUERIES = ("running+shoes", "wool+socks", "rain+jacket", "backpack", "water+bottle", "headlamp", "tent")


def requests(world: World) -> list[dict]:
    rng = world.rng
    out = []
    weights = [w for _, _, w in API]
    normal = world.times(3600)
    burst = world.times(420, *INCIDENT)  # retries during the incident
    for t in sorted(normal + burst):
        method, path, _ = rng.choices(API, weights)[0]
        sku, order = f"SKU-{rng.randint(10000, 99999)}", f"ORD-2024-{rng.randint(100000, 199999)}"
        path = path.format(sku=sku, order=order, query=rng.choice(QUERIES))
        incident = in_window(t, INCIDENT) and path.startswith(
            ("/api/v1/orders", "/api/v1/payments", "/api/v1/cart")
        )
        if incident and rng.random() < 0.7:
            status, latency = rng.choice((500, 503, 500)), rng.randint(29000, 30500)
        else:
            status = 201 if method == "POST" else 200
            roll = rng.random()
            if roll < 0.03:
                status = 404
            elif roll < 0.05:
                status = 400
            elif roll < 0.06 and method == "POST":
                status = 409
            latency = int(rng.lognormvariate(4.2, 0.5)) + (rng.randint(400, 2500) if incident else 0)
        out.append(
            {
                "t": t,
                "rid": world.hex(12),
                "method": method,
                "path": path,
                "status": status,
                "latency": latency,
                "user": rng.choice(world.users),
                "ip": rng.choice(world.clients_v6) if rng.random() < 0.1 else rng.choice(world.clients),
                "agent": rng.choice(AGENTS),
                "order": order,
                "sku": sku,
                "thread": rng.randint(1, 40),
            }
        )
    return out


# --- checkout: log4j-style application log with stack traces --------------------------------------------

STACK_POOL = "\n".join(
    (
        "org.springframework.dao.DataAccessResourceFailureException: Unable to acquire JDBC Connection",
        "\tat org.springframework.orm.jpa.vendor.HibernateJpaDialect"
        ".convertHibernateAccessException(HibernateJpaDialect.java:277)",
        "\tat org.springframework.orm.jpa.JpaTransactionManager.doBegin(JpaTransactionManager.java:466)",
        "\tat com.acme.checkout.service.OrderService.placeOrder(OrderService.java:{line})",
        "\tat com.acme.checkout.api.OrderController.create(OrderController.java:88)",
        "\tat org.apache.catalina.core.ApplicationFilterChain.doFilter(ApplicationFilterChain.java:166)",
        "\tat java.base/java.lang.Thread.run(Thread.java:1583)",
        "Caused by: java.sql.SQLTransientConnectionException: HikariPool-1 - Connection is not available, "
        "request timed out after 30000ms (total=20, active=20, idle=0, waiting={waiting})",
        "\tat com.zaxxer.hikari.pool.HikariPool.createTimeoutException(HikariPool.java:686)",
        "\tat com.zaxxer.hikari.pool.HikariPool.getConnection(HikariPool.java:179)",
        "\t... 14 more",
    )
)
STACK_NPE = "\n".join(
    (
        'java.lang.NullPointerException: Cannot invoke "com.acme.checkout.model.Address.getCountry()" '
        'because "shipping" is null',
        "\tat com.acme.checkout.service.TaxService.rateFor(TaxService.java:57)",
        "\tat com.acme.checkout.service.CartService.totals(CartService.java:{line})",
        "\tat com.acme.checkout.api.CartController.get(CartController.java:41)",
        "\tat java.base/java.lang.Thread.run(Thread.java:1583)",
    )
)


def checkout_log(world: World, reqs: list[dict]) -> list[tuple[datetime, str]]:
    rng = world.rng
    lines: list[tuple[datetime, str]] = []

    def log(t: datetime, level: str, thread: str, logger: str, msg: str) -> None:
        lines.append((t, f"{ms(t)} {level:<5} [{thread}] {logger}: {msg}"))

    for since, version in RELEASES:
        t = since + timedelta(seconds=3)
        log(
            t,
            "INFO",
            "main",
            "com.acme.checkout.CheckoutApplication",
            f"Starting CheckoutApplication v{version} using Java 21.0.2 with PID {rng.randint(1000, 9999)}",
        )
        log(
            t,
            "INFO",
            "main",
            "com.acme.checkout.config.AwsConfig",
            "Loaded credentials aws_access_key_id=AKIA"
            + "".join(rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567") for _ in range(16))
            + " aws_secret_access_key="
            + world.b64(40)
            + " region=eu-west-1",
        )
        log(
            t,
            "INFO",
            "main",
            "com.zaxxer.hikari.HikariDataSource",
            "HikariPool-1 - Starting... url=jdbc:postgresql://checkout_svc:Chk0ut-Pr0d-2024@db-primary.internal:5432/orders",
        )
        log(
            t + timedelta(seconds=2),
            "INFO",
            "main",
            "com.acme.checkout.CheckoutApplication",
            f"Started CheckoutApplication in {rng.uniform(6, 12):.3f} seconds "
            f"(process running for {rng.uniform(7, 13):.3f})",
        )
    for r in reqs:
        t, thread = r["t"], f"http-nio-8080-exec-{r['thread']}"
        if r["path"].startswith("/api/v1/cart/items"):
            log(
                t,
                "INFO",
                thread,
                "com.acme.checkout.service.CartService",
                f"cart {rng.randint(1000, 9999)} updated for user={r['user']} sku={r['sku']} "
                f"qty={rng.randint(1, 4)}",
            )
        if r["path"] == "/api/v1/payments" and r["status"] < 400:
            log(
                t,
                "INFO",
                thread,
                "com.acme.checkout.service.PaymentClient",
                f"authorize order={r['order']} amount={rng.uniform(9, 300):.2f} currency=EUR result=approved "
                f"latency_ms={rng.randint(180, 900)}",
            )
        if r["status"] >= 500:
            log(
                t,
                "WARN",
                "HikariPool-1 housekeeper",
                "com.zaxxer.hikari.pool.HikariPool",
                "HikariPool-1 - Thread starvation or clock leap detected "
                f"(housekeeper delta={rng.randint(30, 60)}s).",
            )
            log(
                t + timedelta(milliseconds=r["latency"]),
                "ERROR",
                thread,
                "com.acme.checkout.api.OrderController",
                f"request_id={r['rid']} method={r['method']} path={r['path']} user={r['user']} "
                f"status={r['status']} latency_ms={r['latency']} failed\n"
                + STACK_POOL.format(line=rng.randint(110, 140), waiting=rng.randint(5, 60)),
            )
            continue
        if r["path"] == "/api/v1/cart" and rng.random() < 0.01:
            log(
                t,
                "ERROR",
                thread,
                "com.acme.checkout.api.CartController",
                f"request_id={r['rid']} status=500 unhandled exception\n"
                + STACK_NPE.format(line=rng.randint(60, 90)),
            )
            r["status"] = 500
            continue
        if r["latency"] > 1500:
            log(
                t,
                "WARN",
                thread,
                "com.acme.checkout.db.OrderRepository",
                f"slow query took {r['latency'] - 50} ms: SELECT o.* FROM orders o "
                "JOIN order_items i ON i.order_id = o.id WHERE o.customer_id = ? AND o.status IN (?, ?)",
            )
        log(
            t + timedelta(milliseconds=r["latency"]),
            "INFO",
            thread,
            "com.acme.checkout.api.RequestLogger",
            f"request_id={r['rid']} method={r['method']} path={r['path']} user={r['user']} "
            f"status={r['status']} latency_ms={r['latency']}",
        )
    for t in world.times(12):
        log(
            t,
            "DEBUG",
            "http-nio-8080-exec-3",
            "com.acme.checkout.security.ServiceAuth",
            "Outgoing request to inventory: "
            f"headers={{Authorization=Bearer {rng.choice(world.tokens)}, X-Client=checkout}}",
        )
    for t in world.times(40):
        log(
            t,
            "INFO",
            "scheduling-1",
            "com.acme.checkout.jobs.AbandonedCartJob",
            f"sent {rng.randint(0, 40)} reminder e-mails, next run in 3600 s",
        )
    return sorted(lines)


# --- nginx: access log, combined format plus request time and request id -------------------------------

STATIC = ("/static/app.{h}.js", "/static/app.{h}.css", "/img/products/{n}.webp", "/favicon.ico", "/")


def nginx_log(world: World, reqs: list[dict]) -> list[str]:
    rng = world.rng
    entries = []
    for r in reqs:
        status = {500: 502, 503: 504}.get(r["status"], r["status"])
        seconds = r["latency"] / 1000
        entries.append(
            (
                r["t"],
                r["ip"],
                r["method"],
                r["path"],
                status,
                rng.randint(120, 9000),
                r["agent"],
                seconds,
                r["rid"],
            )
        )
    for t in world.times(1900):
        path = rng.choice(STATIC).format(h="3f9a1c", n=rng.randint(100, 999))
        entries.append(
            (
                t,
                rng.choice(world.clients),
                "GET",
                path,
                rng.choice((200, 200, 200, 304)),
                rng.randint(300, 90000),
                rng.choice(AGENTS),
                rng.uniform(0.001, 0.02),
                world.hex(12),
            )
        )
    for t in world.times(25):
        key = "sk_live_" + world.b64(24)
        entries.append(
            (
                t,
                rng.choice(world.clients),
                "GET",
                f"/api/v1/export?format=csv&api_key={key}",
                200,
                rng.randint(20000, 900000),
                "curl/8.5.0",
                rng.uniform(0.5, 3),
                world.hex(12),
            )
        )
    for t in world.times(15):
        entries.append(
            (
                t,
                rng.choice(world.clients),
                "GET",
                f"/account/reset?email={rng.choice(world.users)}&token={world.hex(32)}",
                302,
                0,
                rng.choice(AGENTS),
                0.012,
                world.hex(12),
            )
        )
    lines = []
    for t, ip, method, path, status, size, agent, seconds, rid in sorted(entries):
        referer = "https://shop.example.com/" if path.startswith(("/api", "/static", "/img")) else "-"
        lines.append(
            f'{ip} - - [{t:%d/%b/%Y:%H:%M:%S} +0000] "{method} {path} HTTP/1.1" {status} {size} '
            f'"{referer}" "{agent}" rt={seconds:.3f} rid={rid}'
        )
    return lines


# --- payments: JSON lines from a log shipper, nested fields ----------------------------------------------


def payments_log(world: World, reqs: list[dict]) -> list[str]:
    rng = world.rng
    lines = []
    for r in reqs:
        if not r["path"].startswith(("/api/v1/payments", "/api/v1/orders")) or r["method"] != "POST":
            continue
        t = r["t"] + timedelta(milliseconds=rng.randint(5, 40))
        failed = r["status"] >= 500
        event = {
            "@timestamp": f"{t:%Y-%m-%dT%H:%M:%S}.{t.microsecond // 1000:03d}Z",
            "log": {"level": "error" if failed else "info", "logger": "payments.gateway"},
            "service": {"name": "payments", "version": "3.8.1", "environment": "prod"},
            "host": {"name": f"pay-{rng.randint(1, 3)}"},
            "message": "upstream checkout timed out, authorization voided"
            if failed
            else "authorization approved",
            "event": {
                "dataset": "payments.gateway",
                "duration": (30000 if failed else rng.randint(150, 900)) * 1_000_000,
            },
            "http": {
                "request": {"method": "POST", "id": r["rid"]},
                "response": {"status_code": 504 if failed else 201},
            },
            "user": {"email": r["user"]},
            "client": {"ip": r["ip"]},
            "trace": {"id": world.hex(32)},
            "payment": {
                "order_id": r["order"],
                "amount": round(rng.uniform(9, 300), 2),
                "currency": "EUR",
                "provider": rng.choice(("stripe", "adyen")),
                "result": "voided" if failed else "approved",
            },
        }
        if rng.random() < 0.05:
            event["http"]["request"]["headers"] = {"authorization": f"Bearer {world.jwt(r['user'], t)}"}
        lines.append((t, json.dumps(event, separators=(",", ":"))))
    for t in world.times(30, *PCI_LEAK):
        event = {
            "@timestamp": f"{t:%Y-%m-%dT%H:%M:%S}.{t.microsecond // 1000:03d}Z",
            "log": {"level": "debug", "logger": "payments.provider.adyen"},
            "service": {"name": "payments", "version": "3.8.0-debug", "environment": "prod"},
            "message": f"provider request payload card={rng.choice(TEST_CARDS)} exp=12/27 "
            f"holder={rng.choice(FIRST).title()}",
            "session": {
                "id": f"{world.hex(8)}-{world.hex(4)}-4{world.hex(3)}-a{world.hex(3)}-{world.hex(12)}"
            },
        }
        lines.append((t, json.dumps(event, separators=(",", ":"))))
    for t in world.times(60):
        event = {
            "@timestamp": f"{t:%Y-%m-%dT%H:%M:%S}.000Z",
            "log": {"level": "warn", "logger": "payments.fx"},
            "service": {"name": "payments"},
            "message": "exchange rate feed stale, using cached rates",
            "fx": {"age_s": rng.randint(300, 4000), "source": "ecb"},
        }
        lines.append((t, json.dumps(event, separators=(",", ":"))))
    out = [line for _, line in sorted(lines)]
    # The shipper was restarted twice mid-write: two cut lines, as real files have.
    for i in (len(out) // 3, 2 * len(out) // 3):
        out[i] = out[i][: len(out[i]) // 2]
    return out


# --- bastion host: RFC 3164 syslog (auth.log and syslog) --------------------------------------------------


def syslog_line(t: datetime, program: str, pid: int | None, msg: str, iso: bool = False) -> str:
    """RFC 3164 as in auth.log, or with the high-precision timestamp current rsyslog writes to syslog."""
    tag = f"{program}[{pid}]" if pid else program
    when = f"{t:%Y-%m-%dT%H:%M:%S.%f}+00:00" if iso else f"{t:%b} {t.day:>2} {t:%H:%M:%S}"
    return f"{when} bastion-1 {tag}: {msg}"


def auth_log(world: World) -> list[str]:
    rng = world.rng
    staff = ("deploy", "jane", "omar", "li")
    admins = ("10.20.1.15", "10.20.1.16", "10.20.1.23")
    lines = []

    def log(t: datetime, program: str, pid: int | None, msg: str) -> None:
        lines.append((t, syslog_line(t, program, pid, msg)))

    for t in world.times(260):
        user, ip, pid, port = (
            rng.choice(staff),
            rng.choice(admins),
            rng.randint(20000, 40000),
            rng.randint(40000, 65000),
        )
        log(
            t,
            "sshd",
            pid,
            f"Accepted publickey for {user} from {ip} port {port} ssh2: ED25519 SHA256:{world.b64(43)}",
        )
        log(t, "sshd", pid, f"pam_unix(sshd:session): session opened for user {user}(uid=1001) by (uid=0)")
        log(t, "systemd-logind", 612, f"New session {rng.randint(100, 999)} of user {user}.")
        if rng.random() < 0.5:
            cmd = rng.choice(
                (
                    "/usr/bin/systemctl restart checkout",
                    "/usr/bin/journalctl -u checkout -n 200",
                    "/usr/bin/docker ps",
                    "/usr/sbin/ufw status",
                )
            )
            log(
                t + timedelta(seconds=rng.randint(5, 300)),
                "sudo",
                None,
                f"  {user} : TTY=pts/{rng.randint(0, 4)} ; PWD=/home/{user} ; USER=root ; COMMAND={cmd}",
            )
        log(
            t + timedelta(seconds=rng.randint(300, 3600)),
            "sshd",
            pid,
            f"pam_unix(sshd:session): session closed for user {user}",
        )
    for hour in range(DAYS * 24):
        t = START + timedelta(hours=hour, minutes=17, seconds=1)
        pid = rng.randint(3000, 9000)
        log(t, "CRON", pid, "pam_unix(cron:session): session opened for user root(uid=0) by (uid=0)")
        log(t, "CRON", pid, "pam_unix(cron:session): session closed for user root")
    attackers = ("admin", "root", "oracle", "test", "ubuntu", "postgres", "git", "user")
    for t in world.times(420, *BRUTE_FORCE):
        user, port, pid = rng.choice(attackers), rng.randint(30000, 65000), rng.randint(40000, 60000)
        if user == "root":
            log(t, "sshd", pid, f"Failed password for root from 203.0.113.45 port {port} ssh2")
        else:
            log(t, "sshd", pid, f"Invalid user {user} from 203.0.113.45 port {port}")
            log(t, "sshd", pid, f"Failed password for invalid user {user} from 203.0.113.45 port {port} ssh2")
        log(t, "sshd", pid, f"Connection closed by 203.0.113.45 port {port} [preauth]")
    for t in world.times(40):
        ip = rng.choice(("192.0.2.200", "198.51.100.201", "203.0.113.9"))
        log(
            t,
            "sshd",
            rng.randint(20000, 40000),
            f"Connection closed by {ip} port {rng.randint(30000, 65000)} [preauth]",
        )
    return [line for _, line in sorted(lines)]


def system_log(world: World) -> list[str]:
    rng = world.rng
    lines = []

    def log(t: datetime, program: str, pid: int | None, msg: str) -> None:
        lines.append((t, syslog_line(t, program, pid, msg, iso=True)))

    for t in world.times(300):
        src = rng.choice(("192.0.2.200", "198.51.100.201", "203.0.113.9", "203.0.113.45"))
        log(
            t,
            "kernel",
            None,
            f"[{rng.uniform(1e5, 9e5):.6f}] [UFW BLOCK] IN=eth0 OUT= "
            f"MAC=52:54:00:1a:2b:3c:52:54:00:9f:8e:7d:08:00 SRC={src} DST=10.20.0.4 LEN=60 TTL=52 PROTO=TCP "
            f"SPT={rng.randint(1024, 65000)} DPT={rng.choice((23, 3389, 5432, 6379))}",
        )
    for hour in range(0, DAYS * 24, 4):
        t = START + timedelta(hours=hour, minutes=2)
        log(t, "dhclient", 812, "DHCPACK of 10.20.0.4 from 10.20.0.1 (xid=0x5a1c2e3f)")
        log(t, "dhclient", 812, f"bound to 10.20.0.4 -- renewal in {rng.randint(1500, 1900)} seconds.")
    for hour in range(DAYS * 24):
        t = START + timedelta(hours=hour, minutes=17, seconds=1)
        log(t, "CRON", rng.randint(3000, 9000), "(root) CMD (cd / && run-parts --report /etc/cron.hourly)")
    for day in range(DAYS):
        t = START + timedelta(days=day, hours=3, minutes=30)
        log(
            t,
            "CRON",
            rng.randint(3000, 9000),
            "(deploy) CMD (cd /opt/infra && git pull --quiet "
            f"https://deploy-bot:ghp_{world.b64(36)}@github.com/acme/infra.git main)",
        )
        log(t, "systemd", 1, "Starting Daily apt upgrade and clean activities...")
        log(t, "systemd", 1, "apt-daily-upgrade.service: Deactivated successfully.")
    return [line for _, line in sorted(lines)]


# --- HDFS datanodes: Hadoop-style lines, shipped as a zip -----------------------------------------------


def hdfs_log(world: World, node: str, ip: str, failing: bool) -> list[str]:
    rng = world.rng
    peers = [f"10.251.{rng.randint(30, 120)}.{rng.randint(2, 250)}" for _ in range(8)]
    lines = []

    def log(t: datetime, level: str, component: str, msg: str) -> None:
        lines.append((t, f"{t:%y%m%d %H%M%S} {rng.randint(10, 3000)} {level} {component}: {msg}"))

    for t in world.times(700):
        blk = f"blk_{rng.choice(('', '-'))}{rng.randint(10**17, 10**19 - 1)}"
        peer = rng.choice(peers)
        if failing and in_window(t, DISK_FULL):
            log(
                t,
                "WARN",
                "dfs.DataNode$DataXceiver",
                f"writeBlock {blk} received exception java.io.IOException: No space left on device",
            )
            log(
                t,
                "ERROR",
                "dfs.DataNode",
                f"DatanodeRegistration({ip}:50010, storageID=DS-{rng.randint(10**8, 10**9)}-{ip}-50010, "
                f"infoPort=50075, ipcPort=50020):DataXceiver: java.io.IOException: No space left on device\n"
                "\tat org.apache.hadoop.dfs.FSDataset$FSVolume.createTmpFile(FSDataset.java:412)\n"
                "\tat org.apache.hadoop.dfs.DataNode$BlockReceiver.<init>(DataNode.java:2263)",
            )
            continue
        size = rng.choice((67108864, 67108864, rng.randint(1000, 67108864)))
        step = rng.random()
        if step < 0.3:
            log(
                t,
                "INFO",
                "dfs.DataNode$DataXceiver",
                f"Receiving block {blk} src: /{peer}:{rng.randint(30000, 60000)} dest: /{ip}:50010",
            )
        elif step < 0.55:
            log(
                t, "INFO", "dfs.DataNode$PacketResponder", f"Received block {blk} of size {size} from /{peer}"
            )
        elif step < 0.75:
            log(
                t,
                "INFO",
                "dfs.DataNode$PacketResponder",
                f"PacketResponder {rng.randint(0, 2)} for block {blk} terminating",
            )
        elif step < 0.85:
            log(
                t, "INFO", "dfs.DataNode$DataTransfer", f"{ip}:50010:Transmitted block {blk} to /{peer}:50010"
            )
        elif step < 0.95:
            log(
                t,
                "INFO",
                "dfs.FSDataset",
                f"Deleting block {blk} file /mnt/hadoop/dfs/data/current/subdir{rng.randint(0, 63)}/{blk}",
            )
        else:
            log(t, "INFO", "dfs.DataBlockScanner", f"Verification succeeded for {blk}")
    return [line for _, line in sorted(lines)]


def write_zip(path: Path, members: dict[str, list[str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, lines in members.items():
            info = zipfile.ZipInfo(name, date_time=(2024, 3, 14, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, "\n".join(lines) + "\n")
    path.write_bytes(buf.getvalue())


# --- admin portal: Apache 2.2 error log -----------------------------------------------------------------


def apache_error_log(world: World) -> list[str]:
    rng = world.rng
    lines = []

    def log(t: datetime, level: str, msg: str) -> None:
        lines.append((t, f"[{t:%a %b %d %H:%M:%S %Y}] [{level}] {msg}"))

    for day in range(DAYS):
        t = START + timedelta(days=day, hours=4, minutes=47, seconds=44)
        log(t, "notice", "caught SIGUSR1, gracefully restarting")
        log(
            t,
            "notice",
            "Apache/2.2.34 (Unix) mod_ssl/2.2.34 OpenSSL/1.0.2k PHP/5.6.40 configured "
            "-- resuming normal operations",
        )
    for t in world.times(400):
        client = rng.choice(world.clients)
        roll = rng.random()
        if roll < 0.4:
            log(
                t,
                "error",
                f"[client {client}] File does not exist: "
                f"/var/www/admin/{rng.choice(('favicon.ico', 'robots.txt', 'img/logo.png'))}",
            )
        elif roll < 0.6:
            log(
                t,
                "warn",
                f"[client {client}] mod_fcgid: read data timeout in 40 seconds, referer: https://admin.example.com/reports",
            )
        elif roll < 0.75:
            log(
                t,
                "error",
                f"[client {client}] PHP Warning:  session_start(): "
                f"open(/var/lib/php/session/sess_{world.hex(26)}, O_RDWR) failed: "
                "No space left on device (28) in /var/www/admin/lib/auth.php on line 12",
            )
        elif roll < 0.9:
            log(
                t,
                "error",
                f"[client {client}] user {rng.choice(world.users)}: "
                'authentication failure for "/admin": Password Mismatch',
            )
        else:
            log(t, "error", "mod_jk child workerEnv in error state 6")
    probes = (
        ".env",
        "wp-login.php",
        ".git/config",
        "phpmyadmin/index.php",
        "admin/config.php.bak",
        "server-status",
    )
    for t in world.times(300, *SCAN):
        probe = rng.choice(probes)
        if probe in (".env", ".git/config", "server-status"):
            log(
                t,
                "error",
                f"[client 198.51.100.77] client denied by server configuration: /var/www/admin/{probe}",
            )
        else:
            log(t, "error", f"[client 198.51.100.77] File does not exist: /var/www/admin/{probe}")
    return [line for _, line in sorted(lines)]


# --- Windows backup agent: plain lines, CRLF, a few lines in cp1252 -------------------------------------


def backup_agent_log(world: World) -> tuple[list[str], list[int]]:
    """Lines, and the indexes of the lines a French-locale component wrote in cp1252."""
    rng = world.rng
    lines, legacy = [], []
    for day in range(DAYS):
        for job in ("nightly-sql", "fileshare", "config-export"):
            t = START + timedelta(days=day, hours=1, minutes=rng.randint(0, 50))
            lines.append(
                f"{t:%Y-%m-%d %H:%M:%S}.{rng.randint(0, 999):03d} [INFO] BackupAgent: job {job} started "
                f"(target=nas-01.corp.example.net, account=svc_backup@corp.example.net)"
            )
            for _ in range(rng.randint(15, 30)):
                t += timedelta(seconds=rng.randint(5, 90))
                lines.append(
                    f"{t:%Y-%m-%d %H:%M:%S}.{rng.randint(0, 999):03d} [DEBUG] BackupAgent: copied chunk "
                    f"{rng.randint(1, 9999)} ({rng.randint(1, 512)} MB) in {rng.randint(100, 9000)} ms"
                )
            t += timedelta(seconds=30)
            if job == "fileshare" and day == 1:
                lines.append(
                    f"{t:%Y-%m-%d %H:%M:%S}.000 [ERROR] BackupAgent: job {job} failed: "
                    "\\\\nas-01\\backups is not reachable (error 53)"
                )
                lines.append("    at Acme.Backup.Transport.SmbTarget.Open()")
                lines.append("    at Acme.Backup.Jobs.Runner.Execute(JobSpec spec)")
            else:
                lines.append(
                    f"{t:%Y-%m-%d %H:%M:%S}.000 [INFO] BackupAgent: job {job} finished, "
                    f"{rng.randint(2, 300)} GB, status=OK"
                )
            if day == 2 and job == "config-export":
                legacy.append(len(lines))
                lines.append(
                    f"{t:%Y-%m-%d %H:%M:%S}.500 [WARN] Exporteur: sauvegarde terminée avec échecs partiels"
                )
    return lines, legacy


def write_backup_agent(path: Path, world: World) -> None:
    lines, legacy = backup_agent_log(world)
    data = b"".join(
        (line.encode("cp1252") if i in legacy else line.encode("utf-8")) + b"\r\n"
        for i, line in enumerate(lines)
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


# --- labelled: support ticket export --------------------------------------------------------------------

TICKETS = {
    "billing": (
        [
            "I was charged twice for order {order}.",
            "My invoice {invoice} shows the wrong VAT rate.",
            "I cancelled my subscription last month but I was billed again.",
            "The refund for {order} has not arrived.",
            "Why is there an extra fee of {amount} EUR on my statement?",
            "Please send a corrected invoice for {order}.",
            "Our company card was declined although it has enough credit.",
            "The discount code was not applied to {order}.",
        ],
        [
            "The amount was {amount} EUR.",
            "Card ending {last4}.",
            "Can you refund the difference?",
            "Our accounting needs this fixed before month end.",
            "I attached the bank statement.",
        ],
    ),
    "login_access": (
        [
            "I can't log in, the password reset e-mail never arrives at {email}.",
            "My account is locked after too many attempts.",
            "Two-factor codes from the authenticator app are always rejected.",
            "Single sign-on with Okta fails with a SAML error.",
            "I was logged out and now the login page keeps reloading.",
            "A new colleague did not receive the invitation e-mail.",
            "I lost my phone and can't get the 2FA code.",
            "The login says my session expired right after I sign in.",
        ],
        [
            "I tried Chrome and Safari.",
            "Please unlock the account {email}.",
            "I need access today for a client demo.",
            "The error says 'invalid credentials'.",
            "Cleared cookies already.",
        ],
    ),
    "outage": (
        [
            "Checkout returns 502 Bad Gateway since {time}.",
            "The whole shop is down for our customers.",
            "Payments fail with a timeout, nobody can place an order.",
            "Your API answers 503 Service Unavailable.",
            "Order confirmation page shows an error 500.",
            "Since {time} no order goes through.",
            "The mobile app cannot reach the server at all.",
            "Status page says all good but checkout is broken.",
        ],
        [
            "This is urgent, we are losing sales.",
            "Started around {time} UTC.",
            "Request id {rid} if that helps.",
            "Several customers called us.",
            "Please escalate.",
        ],
    ),
    "performance": (
        [
            "The dashboard takes more than 30 seconds to load.",
            "Search has become very slow this week.",
            "Product pages load slowly in the afternoon.",
            "API latency went up to {seconds} seconds at p95.",
            "Exports are much slower than last month.",
            "The admin panel freezes when I open the orders list.",
            "Images load very slowly on mobile.",
            "Saving a product takes several seconds.",
        ],
        [
            "It works, but slowly.",
            "Our monitoring shows p95 around {seconds} s.",
            "Is there maintenance going on?",
            "It is fine in the morning.",
            "Customers complain the site feels sluggish.",
        ],
    ),
    "data_export": (
        [
            "The CSV export is missing the shipping address columns.",
            "Please send me a GDPR export of all my data.",
            "The export job has been stuck at 0% since yesterday.",
            "The export API returns an empty file.",
            "Dates in the export are in the wrong time zone.",
            "I need last year's orders as a spreadsheet.",
            "Special characters are broken in the exported file.",
            "The scheduled weekly export did not arrive.",
        ],
        [
            "We use it for our accounting import.",
            "The account is {email}.",
            "Excel shows garbled text.",
            "Job id {rid}.",
            "We need it by Friday.",
        ],
    ),
    "feature_request": (
        [
            "Please add a dark mode to the dashboard.",
            "Could you add webhooks for order status changes?",
            "We would like Apple Pay at checkout.",
            "It would be great to bulk edit product prices.",
            "Please support exporting reports to PDF.",
            "Can you add a Japanese translation of the shop?",
            "We need role-based permissions for our staff.",
            "Please allow scheduling discounts in advance.",
        ],
        [
            "Other shops offer this already.",
            "Happy to test a beta.",
            "This would save us hours every week.",
            "Is this on the roadmap?",
            "Thanks for considering it.",
        ],
    ),
}
CLOSINGS = ("", "", "Thanks.", "Best regards, {name}", "Thank you for your help!", "Kind regards")


def tickets(world: World) -> list[list[str]]:
    rng = world.rng
    rows = []
    categories = list(TICKETS)
    times = world.times(620, datetime(2024, 3, 1), datetime(2024, 3, 15))
    incident = world.times(40, *INCIDENT)
    for t in sorted(times + incident):
        category = "outage" if in_window(t, INCIDENT) else rng.choice(categories)
        openers, details = TICKETS[category]
        user = rng.choice(world.users)
        fill = {
            "order": f"ORD-2024-{rng.randint(100000, 199999)}",
            "invoice": f"INV-{rng.randint(20000, 29999)}",
            "amount": f"{rng.uniform(5, 400):.2f}",
            "last4": str(rng.randint(1000, 9999)),
            "email": user,
            "time": f"{t:%H:%M}",
            "rid": world.hex(12),
            "seconds": str(rng.randint(3, 12)),
            "name": user.split(".")[0].title(),
        }
        parts = [rng.choice(openers)] + rng.sample(details, rng.randint(0, 2)) + [rng.choice(CLOSINGS)]
        text = " ".join(p.format(**fill) for p in parts if p)
        subject = parts[0].format(**fill).rstrip(".!?")[:60]
        priority = "high" if category == "outage" else rng.choice(("low", "normal", "normal", "high"))
        rows.append(
            [
                f"T-{100000 + len(rows)}",
                f"{t:%Y-%m-%dT%H:%M:%SZ}",
                user,
                rng.choice(("email", "web", "chat", "phone")),
                priority,
                subject,
                text,
                category,
            ]
        )
    return rows


def write_tickets(path: Path, world: World) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(
            [
                "ticket_id",
                "created_at",
                "requester_email",
                "channel",
                "priority",
                "subject",
                "description",
                "category",
            ]
        )
        w.writerows(tickets(world))


# --- documents: runbooks, an incident report, the on-call handbook ---------------------------------------

DOCS = {
    "runbook-checkout-db-pool.md": """# Runbook: checkout database pool exhausted

Owner: team-checkout (checkout-oncall@example.com). Last reviewed 2024-02-20.

## Symptoms

- nginx answers 502 or 504 on `/api/v1/orders`, `/api/v1/cart` and `/api/v1/payments`.
- checkout logs `HikariPool-1 - Connection is not available, request timed out after 30000ms`.
- payments logs `upstream checkout timed out, authorization voided`.
- The `checkout_db_pool_active` gauge sits at 20 of 20.

## Diagnosis

1. Check whether a release went out in the last hour: `kubectl -n shop rollout history deploy/checkout`.
2. Look for slow queries in the checkout log (`slow query took`), and in `pg_stat_activity` on db-primary.
3. If connections are held by one query shape, that query is the cause, not the pool size.

```bash
# long-running queries on the primary
psql -h db-primary.internal -U readonly -c \\
  "select pid, now() - query_start as age, query from pg_stat_activity where state <> 'idle' order by 2 desc"
```

## Mitigation

Roll back first, investigate after: `kubectl -n shop rollout undo deploy/checkout`. Raising the pool size
only moves the problem to the database. Tell the payments on-call, since voided authorizations need a
reconciliation run afterwards.

## Follow-up

Open an incident report, and add the offending query to the release checklist's query review.
""",
    "runbook-ssh-bruteforce.md": """# Runbook: SSH brute force on a bastion host

## Symptoms

Bursts of `Failed password for invalid user` and `Invalid user ... from` in `/var/log/auth.log`, hundreds
per minute from one or a few addresses. The bastion only accepts keys, so these attempts cannot succeed,
but they fill logs and may hide a real intrusion.

## Steps

1. Confirm no successful login from the source: `grep 'Accepted' /var/log/auth.log | grep SOURCE_IP`.
2. Block the source at the edge: `sudo ufw deny from SOURCE_IP`.
3. Check that fail2ban is running: `sudo fail2ban-client status sshd`.
4. Record the source and the time window in the security channel.

## When to escalate

Escalate to security-oncall@example.com at once if any `Accepted` line comes from an address outside
10.20.0.0/16, or if a key you do not know was used.
""",
    "runbook-hdfs-datanode-disk.md": """# Runbook: HDFS datanode out of disk

Datanodes log `writeBlock ... received exception java.io.IOException: No space left on device` when a
data volume is full. Writes fail over to other nodes, so clients rarely notice at first, but
re-replication then loads the rest of the cluster.

## Steps

1. Find the node: the datanode logs name it in `DatanodeRegistration(IP:50010, ...)`.
2. Check the volumes: `hdfs dfsadmin -report` and `df -h /mnt/hadoop` on the node.
3. Remove temporary job output older than 7 days under `/user/*/_temporary`.
4. If a disk has failed rather than filled, decommission the node and open a hardware ticket.

Balancer: run `hdfs balancer -threshold 10` after the node is healthy again.
""",
    "incident-2024-03-12-checkout-502.md": """# Incident report INC-2041: checkout errors after release 2.14.0

Status: resolved. Severity: SEV-2. Incident commander: Priya Nair (priya.nair@example.com).

## Summary

From 14:05 to 14:29 UTC on 12 March 2024 about 70% of order, cart and payment requests failed. nginx
returned 502 and 504, checkout returned 500 and 503. The cause was a query added in release 2.14.0
that joined `order_items` without an index and held database connections for up to 30 seconds, which
exhausted the HikariCP pool of 20 connections.

## Timeline (UTC)

- 13:58 release 2.14.0 of checkout deployed.
- 14:05 first `Connection is not available` errors; nginx 502 rate climbs.
- 14:09 alert `checkout_5xx_ratio > 5%` pages the checkout on-call.
- 14:16 support receives the first tickets about failed checkouts.
- 14:24 slow query identified in the checkout log (`slow query took ... ms`).
- 14:29 rollback to 2.13.2 completed; errors stop within a minute.
- 15:10 payments reconciliation run voids the dangling authorizations.

## Impact

Roughly 300 failed checkout attempts; payments voided the authorizations of failed orders. No data was lost.

## What went well

The runbook for an exhausted database pool was followed and the rollback took five minutes.

## What went wrong

The query review did not cover ORM-generated queries. The pool saturation alert fired after the error
rate alert, not before.

## Action items

- Add an index on `order_items(order_id)` (owner: team-checkout).
- Alert on `checkout_db_pool_active >= 18` for 2 minutes.
- Include ORM-generated SQL in the release query review.
""",
    "oncall-handbook.md": """# On-call handbook

## Rotations

| Service | Primary | Escalation |
|---|---|---|
| checkout | checkout-oncall@example.com | omar.haddad@example.com |
| payments | payments-oncall@example.com | sofia.rossi@example.com |
| platform (nginx, bastion, HDFS) | platform-oncall@example.com | lukas.becker@example.com |
| security | security-oncall@example.com | amara.okafor@example.com |

## Severity levels

SEV-1: the shop or payments are down for everyone. Page the incident commander immediately.

SEV-2: a core flow (checkout, login, payments) fails for a large share of users. Page the service on-call.

SEV-3: degraded performance or a non-core feature broken. Open a ticket; handle in working hours.

## Handover

Write a short handover note at the end of each shift: open incidents, alerts that fired, anything you
silenced and until when. Never paste credentials or customer data into handover notes or tickets; link to
the vault entry instead.

## Useful dashboards

- Checkout: latency, 5xx ratio, database pool usage.
- Edge: nginx request rate and status codes per upstream.
- Payments: authorization approval rate per provider.
""",
}


def main(root: Path = ROOT) -> None:
    rng = random.Random(SEED)
    world = World(rng)
    reqs = requests(world)
    logs = root / "logs"
    app = checkout_log(world, reqs)
    day2 = START + timedelta(days=1)
    write_gzip(logs / "checkout" / "app-2024-03-11.log.gz", [line for t, line in app if t < day2])
    write_text(logs / "checkout" / "app.log", [line for t, line in app if t >= day2])
    write_text(logs / "nginx" / "access.log", nginx_log(world, reqs))
    write_text(logs / "payments" / "events.jsonl", payments_log(world, reqs))
    # Rotated on the morning of the 14th: the gzip header keeps that date, which gives the year.
    write_gzip(logs / "bastion" / "auth.log.1.gz", auth_log(world), mtime=datetime(2024, 3, 14, 6, 25))
    write_text(logs / "bastion" / "syslog", system_log(world))
    write_zip(
        logs / "hdfs" / "datanodes.zip",
        {
            "dn-03.log": hdfs_log(world, "dn-03", "10.251.73.220", failing=False),
            "dn-07.log": hdfs_log(world, "dn-07", "10.251.74.17", failing=True),
        },
    )
    write_text(logs / "admin-portal" / "error_log", apache_error_log(world))
    write_backup_agent(logs / "backup-agent" / "agent.log", world)
    write_tickets(root / "labelled" / "tickets.csv", world)
    for name, text in DOCS.items():
        write_text(root / "docs" / name, text.rstrip("\n").split("\n"))
    total = sum(
        p.stat().st_size for d in ("logs", "labelled", "docs") for p in (root / d).rglob("*") if p.is_file()
    )
    print(f"sample data written under {root} ({total / 1e6:.1f} MB)")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT)
