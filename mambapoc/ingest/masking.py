"""Masking secrets and personal data with placeholders that stay consistent across a dataset.

The same value always gets the same placeholder (`10.0.0.7` → `<IP_3>` everywhere), so a question such as
"which address failed most?" still has one answer on masked data. Placeholders are `<KIND_N>`, numbered per
KIND in order of first appearance (IPv4 and IPv6 addresses share `IP`: both are addresses, and KIND stays
letters only). The table behind the numbers holds at most `max_distinct` values (all kinds together):
past that, a new value's number is a keyed hash of the value, above the bound (`<IP_2838153617>`). It is
just as consistent, needs no memory, and cannot be reversed by hashing guesses (the key is random and
never written). So memory stays bounded whatever the input, and placeholders stay short up to the bound.

Every rule runs in time linear in the text, whatever the text: an attempt either starts only where a
token starts (a look-behind placed after the first character) or has bounded repetitions, so a crafted
line cannot make the engine retry a long scan from each of its characters.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import hmac
import ipaddress
import json
import os
import re
import tempfile
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

from mambapoc.errors import UserError

KINDS = (
    "email",
    "ipv4",
    "ipv6",
    "mac",
    "uuid",
    "hex_id",
    "url_credential",
    "bearer_token",
    "jwt",
    "aws_key",
    "api_key",
    "private_key",
    "card",
    "phone",
    "name",
    "custom",
)
# Masked only when asked for: found by heuristics that also catch ordinary text (order numbers, product
# names), and often what an analysis of the logs needs to keep.
OPT_IN_KINDS = ("phone", "name")
PLACEHOLDERS = {
    "email": "EMAIL",
    "ipv4": "IP",
    "ipv6": "IP",
    "mac": "MAC",
    "uuid": "UUID",
    "hex_id": "HEX",
    "url_credential": "CRED",
    "bearer_token": "TOKEN",
    "jwt": "JWT",
    "aws_key": "AWSKEY",
    "api_key": "APIKEY",
    "private_key": "PRIVATEKEY",
    "card": "CARD",
    "phone": "PHONE",
    "name": "NAME",
    "custom": "MASKED",
}
DEFAULT_MAX_DISTINCT = 100_000
SALT_FILE_ENV = "MAMBAPOC_SALT_FILE"
# Joins the parts of a record for one masking pass: a control character that is whitespace to `re` (so no
# rule's match runs through it) and that text files practically never contain.
_SEP = "\x1f"


def _starts_token(width: int, also: str = "") -> str:
    """A look-behind refusing a match whose first `width` characters follow a letter or digit (or one of
    `also`). Placed after those characters, not before them: a pattern that starts with a look-behind
    loses the engine's fast skip to its first character."""
    dots = "." * width
    behind = rf"(?<![^\W_]{dots})"
    return behind + (rf"(?<![{re.escape(also)}]{dots})" if also else "")


_JWT = rf"eyJ{_starts_token(3, '_.-')}[A-Za-z0-9_-]{{8,}}\.eyJ[A-Za-z0-9_-]{{8,}}\.[A-Za-z0-9_-]{{8,}}"
_AWS_PREFIXES = ("AKIA", "ASIA", "AGPA", "AIDA", "AROA", "AIPA", "ANPA", "ANVA")
_AWS_ID = rf"(?:{'|'.join(_AWS_PREFIXES)})[A-Z0-9]{{16}}"
_KNOWN_KEYS = (
    r"(?:sk|rk|pk)_(?:live|test)_[A-Za-z0-9]{16,}|sk-[A-Za-z0-9_-]{20,}|gh[pousr]_[A-Za-z0-9]{36,}"
    r"|github_pat_[A-Za-z0-9_]{40,}|xox[abprs]-[A-Za-z0-9-]{10,}|AIza[0-9A-Za-z_-]{35}|glpat-[A-Za-z0-9_-]{20,}"
)
# Hints are literal alternations: the regex engine scans for their first characters in C, far faster than
# a Python loop over `in` tests.
_KNOWN_KEY_HINT = re.compile(r"k_live_|k_test_|sk-|gh[pousr]_|github_pat_|xox|AIza|glpat-")
_AWS_HINT = re.compile("|".join(_AWS_PREFIXES))
# Parameter names whose value is a secret, factored by first letter (and, in the rule, behind a look-ahead
# on those letters): a flat alternation of them, tried at every position of every line, made this rule
# slower than all the others together.
_SECRET_NAMES = (
    r"a(?:pi[_-]?key|pikey|ccess[_-]?(?:key(?:[_-]?id)?|token)|uth[_-]?token)|client[_-]?secret|id[_-]?token"
    r"|p(?:ass(?:word|wd|phrase)?|wd|rivate[_-]?key)|refresh[_-]?token"
    r"|s(?:ecret(?:[_-]?access[_-]?key|[_-]?key)?|ession[_-]?token|ecurity[_-]?token|ig(?:nature)?)"
    r"|token|x-amz-credential"
)
_SECRET_HINT = re.compile("key|token|secret|pass|pwd|sig|amz")
# Names whose value may follow after a mere space (`login failed secret hunter2`): few, since most names
# are also ordinary words there (`token expired`).
_BARE_SECRET_NAMES = r"s(?:ecret(?:[_-]?access)?(?:[_-]?key)?)|p(?:ass(?:word|wd|phrase))"
# A quoted value is masked whole, spaces included (`password="correct horse battery"`); the look-behinds
# make it apply only right after an opening quote. JSON escapes (`\"`) stay inside.
_QUOTED_VALUE = r'(?<=")(?=[^"])[^"\\\n\x1f]*(?:\\.[^"\\\n\x1f]*)*(?=")' r"|(?<=')[^'\n\x1f]+(?=')"
# After a bare name, an unquoted word is a secret only if it looks random (a digit, a symbol, a capital
# inside): `Failed password for root` keeps its `for`. Trailing punctuation is the sentence's.
_RANDOM_WORD = r"(?=[^\s\"'<>]*(?:[\d#$%&*+/=@^_~]|[a-z][A-Z]))[^\s\"'<>]*[^\s\"'<>.,;:!?)]"
_PEM_EDGE = r"-----{} (?:[A-Z0-9]{{1,20}} ){{0,3}}PRIVATE KEY(?: BLOCK)?-----"
# A line of a private key after its BEGIN line: base64, a PEM header, a blank, or the END line.
_PEM_LINE = re.compile(
    rf"[A-Za-z0-9+/=]{{1,100}}|(?:Proc-Type|DEK-Info|Comment): [^\n]{{0,200}}|\s*|{_PEM_EDGE.format('END')}"
)
_PEM_END = re.compile(_PEM_EDGE.format("END"))
_HEX = "[0-9A-Fa-f]"
# ASCII digits, a first one alone: a character class first lets the engine skip ahead to it, and `[0-9]`
# is tested faster than `\d`; this rule runs on most lines.
_IPV4 = r"[0-9][0-9]{0,2}\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}"
# These start with a literal, which the regex engine finds in C.
_UUID_HINT = re.compile(rf"-{_HEX}{{4}}-{_HEX}{{4}}-")
_DASHED_MAC_HINT = re.compile(rf"-{_HEX}{{2}}-{_HEX}{{2}}-{_HEX}{{2}}-")
# International (`+81 3-1234-5678`, `+1 (415) 555-0100`, `+14155550100`) or national with dashes
# (`03-1234-5678`, `090-1234-5678`, `(415) 555-0100`); the digit count is checked in `_phone_ok`.
_PHONE = (
    r"(?<![0-9A-Za-z+./-])(?:\+\d{1,3}(?:[ .-]?\(\d{1,4}\)|[ .-]\d{1,4}){1,5}|\+\d{8,15}"
    r"|(?:\(\d{2,5}\) ?|\d{2,5}-)\d{1,4}-\d{3,4})(?!\d|[.-]\d)"
)
_UPPER, _LOWER = "A-ZÀ-ÖØ-Þ", "a-zß-öø-ÿ"
# A capitalised name: John, O'Brien, McDonald, Smith-Jones (not CamelCaseIdentifiers of three humps).
_WORD = rf"[{_UPPER}](?:'[{_UPPER}])?[{_LOWER}]+(?:[{_UPPER}][{_LOWER}]+)?(?:-[{_UPPER}][{_LOWER}]+)?"
_NAME_CUES = (
    r"user(?:[_ ]?name)?|(?:full[_ ]?|display[_ ]?)?name|by|customer|contact|owner|author|assignee|reporter"
    r"|patient|employee"
)
_NAME_CUE_HINT = re.compile(r"user|name|by|customer|contact|owner|author|assignee|reporter|patient|employee")
_TITLE_HINT = re.compile(r"Mr|Ms|Dr|Prof|Miss")
# Kanji (with 々; not the honorifics 様 and 氏) and katakana; a name given after 氏名 or 名前 may also be in
# hiragana.
_JA = "\u3005\u30a1-\u30fa\u30fc\u4e00-\u69d7\u69d9-\u6c0e\u6c10-\u9fff"
_JA_LABELLED = _JA + "\u3041-\u3096"
# Words that take an honorific but name no one (皆様, お客様, 奥さん, ご苦労様, ...).
_JA_NOT_NAMES = frozenset({"皆", "客", "奥", "苦労", "馳走", "世話"})


# (rule, precondition on (text, lowercased text), pattern), applied in this order, each as one pass over
# the text, so a more specific rule masks its match before a looser one can see it (a token that is a
# JWT is counted as a JWT, not as a parameter value). The cheap preconditions skip most passes on most
# lines: a regex pass costs microseconds, a substring test tens of nanoseconds. Patterns start with a
# character class where possible, which lets the regex engine skip ahead; what may precede a match is
# then checked in `_valid` or in a look-behind after the first characters. `R_v` groups mark the part
# replaced when the rest (a scheme, a parameter name, the word Bearer) is kept as context.
_RULES: tuple[tuple[str, Callable[[str, str], object], re.Pattern], ...] = tuple(
    (rule, needs, re.compile(pattern))
    for rule, needs, pattern in (
        # First: the key's base64 lines would otherwise be taken apart by the rules below. Without an END
        # line (an event cut short), the rest of the text is the key.
        (
            "private_key",
            lambda s, low: "PRIVATE KEY" in s,
            rf"{_PEM_EDGE.format('BEGIN')}(?s:.*?)(?:(?P<private_key_end>{_PEM_EDGE.format('END')})|\Z)",
        ),
        # The user may be empty (`redis://:pw@host`) and the password may hold an `@`: it runs to the
        # last one before the host. The scheme starts where its run of scheme characters does.
        (
            "url_credential",
            lambda s, low: "://" in s and "@" in s,
            r"[A-Za-z](?<![A-Za-z0-9+.-].)[A-Za-z0-9+.-]*://"
            r"(?P<url_credential_v>[^\s:/@\"'<>]*:[^\s/\"'<>]+)@",
        ),
        # After an Authorization header name any scheme's value is a secret; elsewhere, the word
        # Bearer is followed by a token only if what follows looks random (has a digit).
        (
            "auth_header",
            lambda s, low: "authorization" in low,
            r"(?i:authorization)[\"']?\s*[:=]\s*[\"']?(?:(?:Bearer|Basic|Token|Digest)\s+)?"
            r"(?P<auth_header_v>[^\s\"',;<>]{6,})",
        ),
        (
            "bearer_token",
            lambda s, low: "earer" in s,
            r"[Bb]earer\s+(?P<bearer_token_v>(?=[\w.~+/-]*\d)[A-Za-z0-9._~+/-]{12,}=*)",
        ),
        ("jwt", lambda s, low: "eyJ" in s, _JWT),
        ("aws_key", lambda s, low: _AWS_HINT.search(s), rf"{_AWS_ID}(?![A-Za-z0-9])"),
        ("known_key", lambda s, low: _KNOWN_KEY_HINT.search(s), rf"(?:{_KNOWN_KEYS})"),
        (
            "named_secret",
            lambda s, low: _SECRET_HINT.search(low),
            rf"(?=[AaCcIiPpRrSsTtXx])(?i:(?P<named_secret_k>{_SECRET_NAMES}))[\"']?\s*[:=]\s*[\"']?"
            rf"(?P<named_secret_v>{_QUOTED_VALUE}|[^\s\"'&,;<>]+)",
        ),
        (
            "bare_secret",
            lambda s, low: "secret" in low or "pass" in low,
            rf"(?=[SsPp])(?i:(?P<bare_secret_k>{_BARE_SECRET_NAMES}))[ \t]+[\"']?"
            rf"(?P<bare_secret_v>{_QUOTED_VALUE}|{_RANDOM_WORD})",
        ),
        # The look-behind makes the local part start at a word start: without it the engine retries
        # from every character of a long word.
        (
            "email",
            lambda s, low: "@" in s,
            r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b",
        ),
        (
            "uuid",
            lambda s, low: _UUID_HINT.search(s),
            rf"{_HEX}{{8}}-{_HEX}{{4}}-{_HEX}{{4}}-{_HEX}{{4}}-{_HEX}{{12}}\b",
        ),
        (
            "mac",
            lambda s, low: s.count(":") >= 5 or _DASHED_MAC_HINT.search(s),
            rf"{_HEX}{_starts_token(1, ':-')}{_HEX}(?P<mac_sep>[:-])"
            rf"{_HEX}{{2}}(?:(?P=mac_sep){_HEX}{{2}}){{4,}}(?![\w-]|:\w)",
        ),
        (
            "ipv6",
            lambda s, low: "::" in s or s.count(":") >= 7,
            rf"{_starts_token(0, ':.')}(?:{_HEX}{{0,4}}:){{2,7}}(?:{_IPV4}|{_HEX}{{0,4}})(?:%[\w.]{{1,64}})?"
            r"(?<![^:]:)(?!\w|:[\w:])",
        ),
        ("ipv4", lambda s, low: s.count(".") >= 3, rf"{_IPV4}(?!\w|\.\d)"),
        (
            "card",
            lambda s, low: True,
            r"[3-6](?<![\w-].)(?:\d{3}(?:[ -]?\d{4}){3}|[47]\d{2}[ -]?\d{6}[ -]?\d{5}|\d{12,18})(?![\w-])",
        ),
        # The look-behind (ASCII: it is tested on every hex digit of every line) keeps the engine from
        # retrying inside a long hex run; `_valid` refuses any other letter or digit before.
        ("hex_id", lambda s, low: True, rf"{_HEX}(?<![0-9A-Za-z].){_HEX}{{15,}}(?![0-9A-Za-z])"),
        # Opt-in kinds (OPT_IN_KINDS) come last, so they never take a value from a kind above.
        ("phone", lambda s, low: "-" in s or "+" in s, _PHONE),
        (
            "name_label",
            lambda s, low: "名" in s,
            r"(?:氏名|名前)(?:[ \t\u3000]*[:：=][ \t\u3000]*|[ \t\u3000]+)[\"'「]?"
            rf"(?P<name_label_v>[{_JA_LABELLED}]{{1,8}}(?:[ \u3000][{_JA_LABELLED}]{{1,8}})?"
            rf"|{_WORD}(?:[ \t]{_WORD}){{0,2}}(?![\w'-]))",
        ),
        (
            "name_title",
            lambda s, low: _TITLE_HINT.search(s),
            rf"(?:Mr|Mrs|Ms|Miss|Dr|Prof)\.?[ \t]+(?P<name_title_v>{_WORD}(?:[ \t]{_WORD}){{0,2}})(?![\w'-])",
        ),
        (
            "name_cue",
            lambda s, low: _NAME_CUE_HINT.search(low),
            rf"(?=[AaBbCcDdEeFfNnOoPpRrUu])(?i:{_NAME_CUES})[\"']?(?:[ \t]*[:=][ \t]*[\"']?|[ \t]+)"
            rf"(?P<name_cue_v>{_WORD}(?:[ \t]{_WORD}){{1,2}})(?![\w'-])",
        ),
        # `(?=(?P<g>...))(?P=g)` is an atomic group (Python 3.10 has no possessive quantifiers): a kanji run
        # that no honorific follows is not given back one character at a time, from each of its characters.
        (
            "name_ja",
            lambda s, low: "さん" in s or "様" in s or "氏" in s,
            rf"(?=(?P<ja_family>[{_JA}]{{1,8}}))(?P<name_ja_v>(?P=ja_family)"
            rf"(?:[ \u3000](?=(?P<ja_given>[{_JA}]{{1,8}}))(?P=ja_given))?)(?:さん|(?<![仕同多模異一両])様|氏(?!名))",
        ),
    )
)
# The kind a rule's matches count as, where it is not the rule's name.
_KIND = {
    "known_key": "api_key",
    "name_label": "name",
    "name_title": "name",
    "name_cue": "name",
    "name_ja": "name",
}
# Rules whose value follows a parameter name (`R_k` group): its kind depends on the name and the value.
_SECRET_RULES = ("named_secret", "bare_secret")
# What may not come right before a rule's match, checked in code: a look-behind in the pattern would stop
# the engine from skipping ahead. Addresses and ids are often glued to other words with `-`, `_` or `/`
# (`DS-12-10.0.0.1-50010`, `sess_4bf92f35...`), so those rules only refuse what would make the match part
# of a longer number or id; a leak costs more than a masked version string. Rules with a look-behind of
# their own (for linear time) need no entry, nor do Japanese names, which follow other words unspaced.
_NOT_BEFORE = {
    "ipv4": "0123456789.",
    "uuid": "",
    "hex_id": "",
    "url_credential": "_-.",
    "auth_header": "_-.",
    "bearer_token": "_-.",
    "aws_key": "_-.",
    "known_key": "_-.",
    "name_title": "",
    "name_cue": "",
}
# Of those rules, all but IPv4 also refuse a letter or digit right before: `v1.2.3.4` or `ip_10.0.0.1`
# could well be addresses.
_WORD_START = set(_NOT_BEFORE) - {"ipv4"}
_JWT_FULL = re.compile(_JWT)
_AWS_FULL = re.compile(_AWS_ID)
_AWS_SECRET_FULL = re.compile(r"[A-Za-z0-9/+]{40}")
_KNOWN_FULL = re.compile(_KNOWN_KEYS)
_HEX_LETTER = re.compile("[A-Fa-f]")
_DIGIT = re.compile(r"\d")
_NON_DIGIT = re.compile(r"\D")
# How far back a parameter's full name is looked for (`db_password` from `password`): names are short.
_NAME_REACH = 64


def _luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _ipv4_ok(m: re.Match) -> bool:
    return all(int(octet) <= 255 for octet in m[0].split("."))


def _ipv6_ok(m: re.Match) -> bool:
    try:
        ipaddress.IPv6Address(m[0].split("%")[0])
    except ValueError:
        return False
    return True


def _card_ok(m: re.Match) -> bool:
    return _luhn(m[0].replace(" ", "").replace("-", ""))


def _hex_id_ok(m: re.Match) -> bool:
    return bool(_HEX_LETTER.search(m[0])) and bool(_DIGIT.search(m[0]))


def _phone_ok(m: re.Match) -> bool:
    digits = _NON_DIGIT.sub("", m[0])
    if m[0].startswith("+"):
        return 8 <= len(digits) <= 15  # E.164 numbers, the country code included
    if digits.startswith("0"):
        return len(digits) in (10, 11)  # Japanese: a leading 0, 10 digits (11 for mobiles); not 03-12-2024
    return len(digits) == 10  # North American: area code, exchange, line


def _ja_name_ok(m: re.Match) -> bool:
    name = m["name_ja_v"]
    return name not in _JA_NOT_NAMES and not name.endswith("者")  # 担当者様, 利用者様 name a role


# Checks a regex cannot express cheaply: octet ranges, real IPv6, Luhn, digit counts.
_CHECKS: dict[str, Callable[[re.Match], bool]] = {
    "ipv4": _ipv4_ok,
    "ipv6": _ipv6_ok,
    "card": _card_ok,
    "hex_id": _hex_id_ok,
    "phone": _phone_ok,
    "name_ja": _ja_name_ok,
}


def _valid(rule: str, m: re.Match) -> bool:
    """Whether a match is one: what comes before it (see _NOT_BEFORE), then the rule's check if any."""
    text, start = m.string, m.start()
    before = text[start - 1] if start else " "
    if before in _NOT_BEFORE.get(rule, "") or (rule in _WORD_START and before.isalnum()):
        return False
    # A parameter name may end a longer one (`db_password`, `clientSecret`) but not a plain word.
    if rule in _SECRET_RULES and before.isalnum() and not (before.islower() and text[start].isupper()):
        return False
    check = _CHECKS.get(rule)
    return check is None or check(m)


def _secret_kind(name: str, value: str, in_url: bool) -> str:
    """The kind of a value found after a secret-like name: by its shape where it has a known one."""
    if _JWT_FULL.fullmatch(value):
        return "jwt"
    name = name.lower()
    aws_secret = "secret" in name and _AWS_SECRET_FULL.fullmatch(value)  # `secret`, `SecretAccessKey`
    if _AWS_FULL.fullmatch(value) or "aws" in name or aws_secret:
        return "aws_key"
    if _KNOWN_FULL.fullmatch(value):
        return "api_key"
    return "url_credential" if in_url else "api_key"


def _value_kind(rule: str, m: re.Match, value: str) -> str:
    """The kind of the `R_v` part of a match of `rule`."""
    if rule in _SECRET_RULES:
        text, floor = m.string, max(0, m.start() - _NAME_REACH)
        key_start = m.start()
        while key_start > floor and (text[key_start - 1].isalnum() or text[key_start - 1] in "_-."):
            key_start -= 1
        in_url = key_start > 0 and text[key_start - 1] in "?&"
        return _secret_kind(text[key_start : m.end(f"{rule}_k")], value, in_url)
    if rule in ("auth_header", "bearer_token"):
        return "jwt" if _JWT_FULL.fullmatch(value) else "bearer_token"
    return _KIND.get(rule, rule)


def opt_in_kinds(names: str | Sequence[str]) -> tuple[str, ...]:
    """The opt-in kinds named in `names` (kinds, or comma-separated lists of them), in OPT_IN_KINDS order."""
    items = [names] if isinstance(names, str) else names
    wanted = {kind.strip().lower() for item in items for kind in str(item).split(",") if kind.strip()}
    unknown = sorted(wanted - set(OPT_IN_KINDS))
    if unknown:
        raise UserError(
            f"cannot mask {unknown[0]!r}: the kinds masked on request are {', '.join(OPT_IN_KINDS)}"
        )
    return tuple(kind for kind in OPT_IN_KINDS if kind in wanted)


def salt_file() -> Path:
    """This user's salt for `patterns_digest`: $MAMBAPOC_SALT_FILE, else mambapoc/salt under
    $XDG_CONFIG_HOME (default ~/.config)."""
    if os.environ.get(SALT_FILE_ENV):
        return Path(os.environ[SALT_FILE_ENV])
    config = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(config) / "mambapoc" / "salt"


def _create_salt(path: Path) -> None:
    # Written whole under a temporary name (mode 0600) and linked into place: a concurrent ingest sees no
    # salt or a complete one, and the first link wins for both.
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".salt.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(os.urandom(32))
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path)
    finally:
        os.unlink(tmp)


def _salt() -> bytes:
    path = salt_file()
    try:
        if not path.exists():
            _create_salt(path)
        salt = path.read_bytes()
    except OSError as e:
        raise UserError(
            f"cannot read or create the salt file {path}: {e}; set {SALT_FILE_ENV} elsewhere"
        ) from e
    if len(salt) < 16:
        raise UserError(f"the salt file {path} is damaged (under 16 bytes): delete it, and a new one is made")
    return salt


def patterns_digest(patterns: Sequence[str]) -> str:
    """A digest of `--mask-regex` patterns, keyed with this user's salt (HMAC-SHA256). The same patterns
    give the same digest on this machine, so a dataset built with them is recognised as up to date; but
    the salt is never written to a dataset, so whoever holds only the dataset cannot confirm a guessed
    pattern (which may spell out a secret) against it. Without patterns there is nothing to hide, and no
    salt file is made: ""."""
    if not patterns:
        return ""
    return hmac.new(_salt(), json.dumps(list(patterns)).encode(), hashlib.sha256).hexdigest()


class Masker:
    """Masks strings in place of secrets; `counts` holds occurrences per kind (see KINDS). `opt_in` names
    the OPT_IN_KINDS to mask too."""

    def rules_run(self) -> list[str]:
        """The kinds this masker looks for, in KINDS order: what a report may say was masked."""
        return [k for k in KINDS if (k not in OPT_IN_KINDS or k in self.opt_in) and (k != "custom" or self.extra)]

    def __init__(
        self,
        extra_patterns: Sequence[str] = (),
        max_distinct: int = DEFAULT_MAX_DISTINCT,
        opt_in: str | Sequence[str] = (),
    ):
        self.extra = []
        for pattern in extra_patterns:
            try:
                self.extra.append(re.compile(pattern))
            except re.error as e:
                raise UserError(f"--mask-regex {pattern!r} is not a valid regular expression: {e}") from e
        self.opt_in = opt_in_kinds(opt_in)
        self.counts: Counter = Counter()
        self._ids: dict[str, dict[str, int]] = {}  # per placeholder KIND
        self._distinct: Counter = Counter()  # per kind
        self.max_distinct = max_distinct
        self._key = os.urandom(16)
        # The placeholder of a private key whose END line the last event did not hold, and of one left
        # open by the event being masked.
        self._open_key: str | None = None
        self._key_left_open: str | None = None
        rules = [
            (rule, needs, pattern)
            for rule, needs, pattern in _RULES
            if _KIND.get(rule, rule) not in OPT_IN_KINDS or _KIND.get(rule, rule) in self.opt_in
        ]
        self._callbacks = {
            count: [
                (needs, pattern, functools.partial(self._replace, rule, count))
                for rule, needs, pattern in rules
            ]
            for count in (True, False)
        }

    @property
    def distinct(self) -> dict[str, int]:
        """Distinct values numbered per kind (values past the table bound are not included)."""
        return dict(self._distinct)

    def placeholder(self, kind: str, value: str, count: bool = True) -> str:
        if count:
            self.counts[kind] += 1
        label = PLACEHOLDERS[kind]
        ids = self._ids.setdefault(label, {})
        n = ids.get(value)
        if n is None:
            if self._distinct.total() >= self.max_distinct:
                digest = hashlib.blake2b(value.encode(), key=self._key, digest_size=4).digest()
                return f"<{label}_{self.max_distinct + 1 + int.from_bytes(digest, 'big')}>"
            n = ids[value] = len(ids) + 1
            self._distinct[kind] += 1
        return f"<{label}_{n}>"

    def mask_event(self, prefix: str, message: str, suffix: str) -> tuple[str, str]:
        """(text, message) masked for an event written `prefix + message + suffix`, counted once, in one
        pass over the three (a pass costs about as much for a short string as for a long one)."""
        whole = prefix + message + suffix
        if self._open_key is not None:
            key, self._open_key = self._open_key, None
            if all(_PEM_LINE.fullmatch(line) for line in whole.split("\n")):
                # The rest of a key whose lines became events of their own (a plain log makes an event of
                # each line): the same placeholder, not counted again, until its END line.
                self._open_key = None if _PEM_END.search(whole) else key
                return key, key
        self._key_left_open = None
        if _SEP in whole:
            text = self.mask(whole.replace(_SEP, " "))
            self._open_key = self._key_left_open
            return text, text
        parts = self.mask(_SEP.join((prefix, message, suffix))).split(_SEP)
        self._open_key = self._key_left_open
        # Where a masked value ran across a separator (a private key going on from the message into the
        # suffix), the message alone would not show the secret's context: the record keeps the whole
        # masked event as its message too.
        text = "".join(parts)
        return text, parts[1] if len(parts) == 3 else text

    def mask(self, text: str, count: bool = True) -> str:
        """`text` with every secret replaced. `count=False` masks the same way without counting, for a
        field whose content is also masked (and counted) as part of the record's text."""
        for pattern in self.extra:
            text = pattern.sub(lambda m: self.placeholder("custom", m[0], count), text)
        low = text.lower()
        for needs, pattern, callback in self._callbacks[count]:
            if needs(text, low):
                text = pattern.sub(callback, text)
        return text

    def _replace(self, rule: str, count: bool, m: re.Match) -> str:
        whole = m[0]
        if not _valid(rule, m):
            return whole
        group = f"{rule}_v"
        if group not in m.re.groupindex:
            # Numbered as the event has it: only a private key can run through a separator (see mask_event).
            placeholder = self.placeholder(_KIND.get(rule, rule), whole.replace(_SEP, ""), count)
            if rule == "private_key" and m["private_key_end"] is None:
                self._key_left_open = placeholder
            return placeholder
        value = m[group]
        cut = m.start(group) - m.start()
        placeholder = self.placeholder(_value_kind(rule, m, value), value, count)
        return whole[:cut] + placeholder + whole[cut + len(value) :]
