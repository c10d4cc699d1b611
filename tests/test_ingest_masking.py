"""Masking: every kind of secret is replaced, consistently, and nothing of it reaches the dataset's files."""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import stat
import time

import pytest
import yaml

from mambapoc.cli import main
from mambapoc.errors import UserError
from mambapoc.ingest import ingest
from mambapoc.ingest.masking import KINDS, OPT_IN_KINDS, SALT_FILE_ENV, Masker, patterns_digest, salt_file
from mambapoc.recipe import load_recipe

JWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJqYW5lQGV4YW1wbGUuY29tIiwiZXhwIjoxNzEwMjU2NDAwfQ"
    ".dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"
)
AWS_SECRET = "fAkE/sEcReT+0123456789/abcdefghijKLMNOPQ"  # 40 characters, as AWS secret access keys have
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
    ("api_key", "Tr0ub4dor-3", "auth retry pwd=Tr0ub4dor-3 rejected"),
    ("api_key", "correct horse battery staple", 'vault login password="correct horse battery staple" failed'),
    ("api_key", "hunter2x", "login failed secret hunter2x"),
    ("url_credential", ":r3dis-Pa55", "cache at redis://:r3dis-Pa55@cache-1:6379/0 unreachable"),
    ("aws_key", AWS_SECRET, f"rotated secret {AWS_SECRET} for deploy"),
    (
        "private_key",
        "MIIEfakeKEYbodyONLYforTESTS",
        "-----BEGIN RSA PRIVATE KEY----- MIIEfakeKEYbodyONLYforTESTS -----END RSA PRIVATE KEY-----",
    ),
    ("card", "4111 1111 1111 1111", "provider payload card=4111 1111 1111 1111 exp=12/27"),
    ("card", "5555555555554444", "card 5555555555554444 declined"),
    ("phone", "+81 3-1234-5678", "callback requested to +81 3-1234-5678 by support"),
    ("name", "Hanako Yamada", "ticket opened by Hanako Yamada"),
    ("custom", "ACME-INTERNAL-7731", "ticket ACME-INTERNAL-7731 escalated"),
]
CUSTOM = r"ACME-INTERNAL-\d+"


@pytest.fixture(autouse=True)
def _salt_file(tmp_path, monkeypatch):
    """Keeps every test off the user's own salt file."""
    monkeypatch.setenv(SALT_FILE_ENV, str(tmp_path / "salt"))


@pytest.mark.parametrize(
    "kind, value, line", SECRETS, ids=[f"{k}-{i}" for i, (k, _, _) in enumerate(SECRETS)]
)
def test_each_kind_is_masked_and_counted(kind, value, line):
    masker = Masker([CUSTOM], opt_in=OPT_IN_KINDS)
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

    result = ingest(
        [src],
        name="secrets",
        data_dir=tmp_path / "data",
        mask_regex=[CUSTOM],
        mask_extra=["phone,name"],
        progress=False,
    )

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


# (line, secret): the secret must go, what names it must stay.
PASSWORDS = [
    ("db connect pass=Pl4in-pass ok", "Pl4in-pass"),
    ("db connect pwd=Pl4in-pwd ok", "Pl4in-pwd"),
    ("db connect passwd=Pl4in-passwd ok", "Pl4in-passwd"),
    ("login failed secret hunter2 for bob", "hunter2"),
    ("password: hunter3", "hunter3"),
    ("user bob password hunter4. retrying", "hunter4"),
    ("aws_secret_access_key " + AWS_SECRET, AWS_SECRET),
    ('password="correct horse battery"', "correct horse battery"),
    ("pwd='a b c' next", "a b c"),
    ('{"password": "two \\"quoted\\" words", "retries": 3}', 'two \\"quoted\\" words'),
    ('vault says: password "with spaces 2"', "with spaces 2"),
]


@pytest.mark.parametrize("line, secret", PASSWORDS)
def test_passwords_are_masked_whole_after_names_and_bare_words(line, secret):
    masked = Masker().mask(line)
    assert secret not in masked and "<" in masked
    for part in secret.split():
        assert len(part) < 4 or part not in masked, masked  # no word of a quoted password is left


def test_words_after_bare_names_are_kept_unless_they_look_random():
    lines = [
        "Failed password for root from port 22",
        "password changed.",
        "Password reset required",
        "secret rotated by operator",
        'secrets "db-creds" not found',
        "bypass=1 compass: north",
    ]
    masker = Masker()
    assert [masker.mask(s) for s in lines] == lines


def test_url_credentials_with_an_empty_user_or_an_at_sign():
    masker = Masker()
    assert masker.mask("redis://:s3cr3t@cache:6379/0") == "redis://<CRED_1>@cache:6379/0"
    assert masker.mask("amqp://guest:gu3st@mq:5672/") == "amqp://<CRED_2>@mq:5672/"
    assert (
        masker.mask("https://deploy:p@ss@git.example.com/r.git") == "https://<CRED_3>@git.example.com/r.git"
    )
    assert masker.counts == {"url_credential": 3}


@pytest.mark.parametrize("label", ["", "RSA ", "EC ", "OPENSSH ", "ENCRYPTED "])
def test_a_private_key_block_is_masked_whole_across_lines(label):
    block = (
        f"-----BEGIN {label}PRIVATE KEY-----\nMIIfakeLINEone\nfakeLINEtwo==\n-----END {label}PRIVATE KEY-----"
    )
    masker = Masker()
    assert masker.mask(f"loading key\n{block}\ndone") == "loading key\n<PRIVATEKEY_1>\ndone"
    assert masker.counts == {"private_key": 1}


def test_a_private_key_without_its_end_masks_the_rest_of_the_event():
    masker = Masker()
    text, message = masker.mask_event(
        "2024-03-12 14:05:00,000 ERROR [main] x: ",
        "bad key -----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1fakeLINE",
        " (from 10.0.0.1)",
    )
    assert "fakeLINE" not in text and "fakeLINE" not in message and "10.0.0.1" not in text
    assert text.endswith("bad key <PRIVATEKEY_1>") and masker.counts == {"private_key": 1}


def test_a_private_key_whose_lines_are_events_of_their_own_is_masked_to_its_end():
    masker = Masker()
    events = [
        ("t0 ", "cannot parse -----BEGIN RSA PRIVATE KEY-----", ""),
        ("", "Proc-Type: 4,ENCRYPTED", ""),
        ("", "MIIEfakeBODYlineONE+/", ""),
        ("", "fakeBODYlineTWO==", ""),
        ("", "-----END RSA PRIVATE KEY-----", ""),
        ("", "MIIEnotAkeyANYMORE", ""),
        ("t1 ", "-----BEGIN PRIVATE KEY-----", ""),
        ("t2 ", "next event from 10.0.0.1", ""),
    ]
    texts = [masker.mask_event(*e)[0] for e in events]
    assert texts[:6] == ["t0 cannot parse <PRIVATEKEY_1>"] + ["<PRIVATEKEY_1>"] * 4 + ["MIIEnotAkeyANYMORE"]
    assert texts[6:] == ["t1 <PRIVATEKEY_2>", "t2 next event from <IP_1>"]  # a log line ends a key
    assert masker.counts == {"private_key": 2, "ipv4": 1}


def test_a_private_key_in_a_multi_line_log_event_leaves_no_line_behind(tmp_path):
    src = tmp_path / "app.log"
    src.write_text(
        "2024-03-12 14:05:00,000 ERROR [main] com.acme.Tls: cannot parse key\n"
        "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIfakeKEYlineONE\nAwEHoUQDQgAEfakeKEYlineTWO\n"
        "-----END EC PRIVATE KEY-----\n"
        "2024-03-12 14:05:01,000 INFO [main] com.acme.Tls: retrying\n"
    )
    result = ingest([src], data_dir=tmp_path / "data", progress=False)
    written = _all_text_under(result.path)
    assert "fakeKEYline" not in written and "BEGIN EC" not in written
    assert result.manifest["masking"]["counts"]["private_key"] == 1


# (kind, line, value): masked only when the kind is asked for.
OPT_IN = [
    ("phone", "call +81 3-1234-5678 now", "+81 3-1234-5678"),
    ("phone", "tel:+1 (415) 555-0100", "+1 (415) 555-0100"),
    ("phone", "sms to +14155550100 sent", "+14155550100"),
    ("phone", "office 03-1234-5678", "03-1234-5678"),
    ("phone", "携帯090-1234-5678です", "090-1234-5678"),
    ("phone", "desk (415) 555-0100 ext 7", "(415) 555-0100"),
    ("name", "user John Smith logged in", "John Smith"),
    ("name", "created by Jane O'Brien", "Jane O'Brien"),
    ("name", "customer: Mary-Ann McDonald", "Mary-Ann McDonald"),
    ("name", "Mr. Smith called", "Smith"),
    ("name", "assigned to Dr. Jane Doe", "Jane Doe"),
    ("name", "山田太郎さんがログインしました", "山田太郎"),
    ("name", "山田 太郎様より問い合わせ", "山田 太郎"),
    ("name", "担当の田中氏が対応", "田中"),
    ("name", "氏名: 佐藤花子", "佐藤花子"),
    ("name", "名前：やまだ たろう", "やまだ たろう"),
]


@pytest.mark.parametrize("kind, line, value", OPT_IN)
def test_phones_and_names_are_masked_only_when_asked(kind, line, value):
    assert Masker().mask(line) == line
    masker = Masker(opt_in=kind)
    masked = masker.mask(line)
    assert value not in masked and masker.counts == {kind: 1}, (masked, masker.counts)


def test_opt_in_kinds_leave_look_alikes_alone():
    lines = [
        "on 03-12-2024 at 2024-03-12 10:00:00 order ORD-2024-118823 ref 1234-5678-9012 v1.2.3 offset +09:00",
        "Caused by: java.lang.NullPointerException at Foo.bar",
        "hostname Web Server; user=jsmith; by default",
        "仕様書を参照してください。お客様各位、皆様へ。担当者様",
    ]
    masker = Masker(opt_in=OPT_IN_KINDS)
    assert [masker.mask(s) for s in lines] == lines


def test_opt_in_kinds_are_checked_and_read_from_lists_or_commas():
    assert Masker(opt_in=["name, phone"]).opt_in == ("phone", "name")
    assert Masker(opt_in="name").opt_in == ("name",)
    with pytest.raises(UserError, match="cannot mask 'email'.*phone, name"):
        Masker(opt_in="phone,email")


def test_recipe_and_cli_pass_the_opt_in_kinds_to_ingest(tmp_path, capsys):
    src = tmp_path / "app.log"
    src.write_text("2024-03-12 14:05:00,000 INFO [main] com.acme.Svc: ticket opened by Hanako Yamada\n")
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"ingest: {{paths: [{src.name}], mask_extra: 'phone,name'}}\n")
    loaded = load_recipe(recipe)
    assert loaded.ingest.mask_extra == ["phone", "name"]
    assert loaded.ingest.options()["mask_extra"] == ["phone", "name"]
    with pytest.raises(UserError, match="ingest.mask_extra: cannot mask 'address'"):
        load_recipe(recipe, ["ingest.mask_extra=[address]"])

    with contextlib.suppress(SystemExit):
        main(["ingest", str(src), "--data-dir", str(tmp_path / "data"), "--mask-extra", "name"])
    manifest = yaml.safe_load((tmp_path / "data" / "app" / "manifest.yaml").read_text())
    assert manifest["masking"]["counts"] == {"name": 1} and manifest["options"]["mask_extra"] == ["name"]
    with contextlib.suppress(SystemExit):  # --mask is the short spelling
        main(["ingest", str(src), "--data-dir", str(tmp_path / "data2"), "--mask", "phone,name"])
    manifest = yaml.safe_load((tmp_path / "data2" / "app" / "manifest.yaml").read_text())
    assert manifest["options"]["mask_extra"] == ["phone", "name"]


def _repeat(unit: str, size: int = 1 << 20) -> str:
    return unit * (size // len(unit))


# One crafted 1 MB line per rule, shaped to make a backtracking pattern retry a long scan from each of
# its characters (near misses, not matches).
CRAFTED = {
    "mac, dashes": _repeat("aa-") + "g",
    "mac, colons": _repeat("aa:") + "g",
    "jwt, one run": _repeat("eyJ"),
    "jwt, dotted": _repeat("eyJaaaaaaaa."),
    "base64 run": _repeat("Ab0+/"),
    "hex run": _repeat("a1") + "g",
    "email, at signs": _repeat("a@"),
    "email, labels": "x@" + _repeat("aa.") + "1",
    "url, colons": "http://" + _repeat("a:"),
    "url, long scheme": _repeat("a") + "://u:p@h",
    "digits": _repeat("4"),
    "digit groups": _repeat("4111 "),
    "dotted digits": _repeat("1."),
    "ipv6, colons": _repeat("a:") + "%" + _repeat("a", 1 << 16),
    "bearer": "Bearer " + _repeat("a"),
    "authorization": _repeat("authorization: "),
    "named secret, open quote": 'password="' + _repeat("a "),
    "named secret, names": _repeat("password"),
    "bare secret": _repeat("secret "),
    "known key": _repeat("sk-"),
    "uuid": _repeat("aaaaaaaa-aaaa-"),
    "private key": _repeat("-----BEGIN PRIVATE KEY-----"),
    "phone, international": _repeat("+1 "),
    "phone, national": _repeat("03-"),
    "names": _repeat("user Ab "),
    "japanese name": _repeat("山田") + "さん",
}


@pytest.mark.parametrize("line", CRAFTED.values(), ids=CRAFTED.keys())
def test_every_rule_takes_linear_time_on_crafted_lines(line):
    masker = Masker(opt_in=OPT_IN_KINDS)
    start = time.perf_counter()
    masker.mask(line)
    assert time.perf_counter() - start < 1.0


def test_patterns_digest_is_keyed_with_a_private_salt(tmp_path, monkeypatch):
    patterns = [CUSTOM]
    assert patterns_digest([]) == "" and not (tmp_path / "salt").exists()  # nothing to hide, no salt made
    first = patterns_digest(patterns)
    assert patterns_digest(patterns) == first
    assert stat.S_IMODE((tmp_path / "salt").stat().st_mode) == 0o600
    assert patterns_digest([CUSTOM + "x"]) != first
    monkeypatch.setenv(SALT_FILE_ENV, str(tmp_path / "other-salt"))
    assert patterns_digest(patterns) != first


def test_the_salt_file_defaults_to_the_users_config_folder(tmp_path, monkeypatch):
    monkeypatch.delenv(SALT_FILE_ENV)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    assert salt_file() == tmp_path / "config" / "mambapoc" / "salt"
    monkeypatch.delenv("XDG_CONFIG_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert salt_file() == tmp_path / "home" / ".config" / "mambapoc" / "salt"


def test_a_damaged_salt_file_is_a_user_error(tmp_path):
    (tmp_path / "salt").write_bytes(b"short")
    with pytest.raises(UserError, match="damaged"):
        patterns_digest([CUSTOM])


def test_the_manifest_cannot_confirm_a_guessed_pattern(tmp_path, monkeypatch):
    src = tmp_path / "a.log"
    src.write_text("2024-03-12 14:05:00,000 INFO [main] com.acme.Svc: ticket ACME-INTERNAL-7731 escalated\n")
    data = tmp_path / "data"
    built = ingest([src], data_dir=data, mask_regex=[CUSTOM], progress=False)
    again = ingest([src], data_dir=data, mask_regex=[CUSTOM], progress=False)
    assert again.skipped_reason  # same sources, patterns and salt: up to date

    written = _all_text_under(built.path)
    assert CUSTOM not in written and (tmp_path / "salt").read_bytes().hex() not in written
    # The fingerprint changes with the salt alone, so without the salt no guess can be checked against it.
    monkeypatch.setenv(SALT_FILE_ENV, str(tmp_path / "another-machine"))
    with pytest.raises(UserError, match="already exists"):
        ingest([src], data_dir=data, mask_regex=[CUSTOM], progress=False)
    assert os.listdir(data) == [built.path.name]
