"""Masking: every kind of secret is replaced, consistently, and nothing of it reaches the dataset's files."""

from __future__ import annotations

import gzip
import json

import pytest

from mambapoc.errors import UserError
from mambapoc.ingest import ingest
from mambapoc.ingest.masking import KINDS, Masker

JWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJqYW5lQGV4YW1wbGUuY29tIiwiZXhwIjoxNzEwMjU2NDAwfQ"
    ".dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"
)
# (kind, raw value, a line carrying it): each value must disappear, and be counted as its kind.
SECRETS = [
    ("email", "jane.doe@example.com", "login ok for user=jane.doe@example.com"),
    ("ipv4", "203.0.113.45", "Failed password for root from 203.0.113.45 port 40022 ssh2"),
    ("ipv6", "2001:db8:4a1::1f", "client 2001:db8:4a1::1f connected"),
    ("mac", "52:54:00:1a:2b:3c", "dhcp offer to 52:54:00:1a:2b:3c on eth0"),
    ("uuid", "123e4567-e89b-42d3-a456-426614174000", "session 123e4567-e89b-42d3-a456-426614174000 opened"),
    ("hex_id", "4bf92f3577b34da6a3ce929d0e0e4736", "trace_id=4bf92f3577b34da6a3ce929d0e0e4736 span ok"),
    (
        "url_credential",
        "checkout_svc:Chk0ut-Pr0d-2024",
        "connecting to jdbc:postgresql://checkout_svc:Chk0ut-Pr0d-2024@db-primary.internal:5432/orders",
    ),
    ("url_credential", "Zq8xYl2pRt7vKw3m", "GET /reset?user=7&token=Zq8xYl2pRt7vKw3m HTTP/1.1"),
    (
        "bearer_token",
        "tok_9f8e7d6c5b4a3f2e1d0c9b8a",
        "headers={Authorization=Bearer tok_9f8e7d6c5b4a3f2e1d0c9b8a}",
    ),
    ("jwt", JWT, f"auth header Bearer {JWT} accepted"),
    ("aws_key", "AKIAIOSFODNN7EXAMPLE", "Loaded credentials aws_access_key_id=AKIAIOSFODNN7EXAMPLE"),
    (
        "aws_key",
        "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        "aws_secret_access_key=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    ),
    ("api_key", "sk_live_4eC39HqLyjWDarjtT1zdp7dc", "charge via key sk_live_4eC39HqLyjWDarjtT1zdp7dc"),
    (
        "api_key",
        "ghp_abcdefghijklmnopqrstuvwxyz0123456789",
        "git token ghp_abcdefghijklmnopqrstuvwxyz0123456789 used",
    ),
    ("api_key", "hunter2hunter2", 'config {"password": "hunter2hunter2", "retries": 3}'),
    ("card", "4111 1111 1111 1111", "provider payload card=4111 1111 1111 1111 exp=12/27"),
    ("card", "5555555555554444", "card 5555555555554444 declined"),
    ("custom", "ACME-INTERNAL-7731", "ticket ACME-INTERNAL-7731 escalated"),
]
CUSTOM = r"ACME-INTERNAL-\d+"


@pytest.mark.parametrize(
    "kind, value, line", SECRETS, ids=[f"{k}-{i}" for i, (k, _, _) in enumerate(SECRETS)]
)
def test_each_kind_is_masked_and_counted(kind, value, line):
    masker = Masker([CUSTOM])
    masked = masker.mask(line)
    assert value not in masked
    assert masker.counts[kind] >= 1, (masked, masker.counts)


def test_ordinary_log_content_is_left_alone():
    masker = Masker()
    lines = [
        "2015-10-18 18:01:47,978 INFO [main] org.x.Y: done in 12:34:56",
        "request_id=7f3a9c01b2d4 status=502 latency_ms=30012",
        "PacketResponder 1 for block blk_-1608999687919862906 terminating",
        "Foo::bar std::move called; Bearer token missing; Basic authentication failed",
        "epoch 1710252309123 and order ORD-2024-118823",
    ]
    assert [masker.mask(s) for s in lines] == lines
    assert not masker.counts


def test_placeholders_are_consistent_and_numbered_per_kind():
    masker = Masker()
    a = masker.mask("from 10.0.0.7 and 10.0.0.8 user bob@example.com")
    b = masker.mask("again 10.0.0.8, 10.0.0.7; bob@example.com")
    assert a == "from <IP_1> and <IP_2> user <EMAIL_1>"
    assert b == "again <IP_2>, <IP_1>; <EMAIL_1>"
    assert masker.counts["ipv4"] == 4 and masker.distinct == {"ipv4": 2, "email": 1}


def test_past_the_bound_placeholders_are_hashed_and_still_consistent():
    masker = Masker(max_distinct=2)
    first = [masker.mask(f"host 10.0.0.{i}") for i in range(6)]
    again = [masker.mask(f"host 10.0.0.{i}") for i in range(6)]
    assert first == again
    assert first[:2] == ["host <IP_1>", "host <IP_2>"]
    numbers = [int(s[len("host <IP_") : -1]) for s in first[2:]]
    assert all(n > 2 for n in numbers) and len(set(numbers)) == 4
    assert masker.distinct == {"ipv4": 2}  # the table stopped growing


def test_an_event_is_masked_in_one_pass_counted_once_and_its_message_kept_apart():
    masker = Masker()
    text, message = masker.mask_event("10.0.0.1 - - ", "GET /?email=a@b.io", " ua 10.0.0.1")
    assert (text, message) == ("<IP_1> - - GET /?email=<EMAIL_1> ua <IP_1>", "GET /?email=<EMAIL_1>")
    assert masker.counts == {"ipv4": 2, "email": 1}


def test_a_secret_across_prefix_and_message_is_still_masked():
    masker = Masker()
    text, message = masker.mask_event("db password:", " hunter2 rejected", "")
    assert "hunter2" not in text and "hunter2" not in message
    assert masker.counts == {"api_key": 1}


def test_invalid_custom_regex_is_a_user_error():
    with pytest.raises(UserError, match="not a valid regular expression"):
        Masker(["(unclosed"])


def _all_text_under(path) -> str:
    out = []
    for f in sorted(path.rglob("*")):
        if f.is_file():
            data = f.read_bytes()
            out.append((gzip.decompress(data) if f.suffix == ".gz" else data).decode("utf-8"))
    return "\n".join(out)


def test_no_secret_reaches_any_file_of_the_dataset(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    lines = [line for _, _, line in SECRETS]
    (src / "app.log").write_text(
        "".join(
            f"2024-03-12 14:05:{i:02d},000 ERROR [main] com.acme.Svc: {line}\n"
            for i, line in enumerate(lines)
        )
    )
    (src / "events.jsonl").write_text(
        "".join(
            json.dumps(
                {
                    "@timestamp": "2024-03-12T14:05:09Z",
                    "level": "warn",
                    "logger": "acme.gateway",
                    "message": line,
                    "ctx": {"detail": {"raw": line}},
                }
            )
            + "\n"
            for line in lines
        )
    )
    (src / "access.log").write_text(
        "203.0.113.45 - jane.doe@example.com [12/Mar/2024:14:05:09 +0000] "
        '"GET /export?api_key=sk_live_4eC39HqLyjWDarjtT1zdp7dc HTTP/1.1" 200 12 "-" "curl/8"\n'
    )
    (src / "tickets.csv").write_text(
        "description,category\n"
        + "".join(f'"{line.replace(chr(34), chr(34) * 2)}",{kind}\n' for kind, _, line in SECRETS)
    )
    (src / "runbook.md").write_text("# Contacts (jane.doe@example.com)\n\n" + "\n\n".join(lines) + "\n")

    result = ingest([src], name="secrets", data_dir=tmp_path / "data", mask_regex=[CUSTOM], progress=False)

    written = _all_text_under(result.path)
    for kind, value, _ in SECRETS:
        assert value not in written, f"{kind} value {value!r} leaked"
    assert CUSTOM not in written  # the user's own expression may itself name a secret
    counts = result.manifest["masking"]["counts"]
    for kind in KINDS:
        assert counts.get(kind, 0) >= 5, (kind, counts)  # once per source at least
    # Same value, same placeholder, in every source.
    records = [
        json.loads(r) for r in gzip.decompress((result.path / "records.jsonl.gz").read_bytes()).splitlines()
    ]
    email_placeholders = {
        w for r in records for w in r["text"].replace("=", " ").split() if w.startswith("<EMAIL_")
    }
    assert {w.strip("(),;") for w in email_placeholders} == {"<EMAIL_1>"}


def test_no_mask_keeps_values(tmp_path):
    src = tmp_path / "a.log"
    src.write_text("2024-03-12 14:05:00,000 INFO [main] com.acme.Svc: user jane.doe@example.com\n")
    result = ingest([src], data_dir=tmp_path / "data", mask=False, progress=False)
    assert "jane.doe@example.com" in _all_text_under(result.path)
    assert result.manifest["masking"] == {"enabled": False}
