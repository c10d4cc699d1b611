"""Masking secrets and personal data with placeholders that stay consistent across a dataset.

The same value always gets the same placeholder (`10.0.0.7` → `<IP_3>` everywhere), so a question such as
"which address failed most?" still has one answer on masked data. Placeholders are `<KIND_N>`, numbered per
KIND in order of first appearance (IPv4 and IPv6 addresses share `IP`: both are addresses, and KIND stays
letters only). The table behind the numbers holds at most `max_distinct` values (all kinds together):
past that, a new value's number is a keyed hash of the value, above the bound (`<IP_2838153617>`). It is
just as consistent, needs no memory, and cannot be reversed by hashing guesses (the key is random and
never written). So memory stays bounded whatever the input, and placeholders stay short up to the bound.
"""

from __future__ import annotations

import functools
import hashlib
import ipaddress
import os
import re
from collections import Counter
from collections.abc import Callable, Sequence

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
    "card",
    "custom",
)
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
    "card": "CARD",
    "custom": "MASKED",
}
DEFAULT_MAX_DISTINCT = 100_000
# Joins the parts of a record for one masking pass: a control character that is whitespace to `re` (so no
# rule's match runs through it) and that text files practically never contain.
_SEP = "\x1f"

_JWT = r"eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"
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
    r"|p(?:assword|asswd|wd|rivate[_-]?key)|refresh[_-]?token"
    r"|s(?:ecret(?:[_-]?access[_-]?key|[_-]?key)?|ession[_-]?token|ecurity[_-]?token|ig(?:nature)?)"
    r"|token|x-amz-credential"
)
_SECRET_HINT = re.compile("key|token|secret|pass|pwd|sig|amz")
_HEX = "[0-9A-Fa-f]"
_IPV4 = r"\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}"
# These start with a literal, which the regex engine finds in C.
_UUID_HINT = re.compile(rf"-{_HEX}{{4}}-{_HEX}{{4}}-")
_DASHED_MAC_HINT = re.compile(rf"-{_HEX}{{2}}-{_HEX}{{2}}-{_HEX}{{2}}-")


# (rule, precondition on (text, lowercased text), pattern), applied in this order, each as one pass over
# the text, so a more specific rule masks its match before a looser one can see it (a token that is a
# JWT is counted as a JWT, not as a parameter value). The cheap preconditions skip most passes on most
# lines: a regex pass costs microseconds, a substring test tens of nanoseconds. Patterns start with a
# character class where possible, which lets the regex engine skip ahead; what may precede a match is
# then checked in `_valid`. `R_v` groups mark the part replaced when the rest (a scheme, a parameter name,
# the word Bearer) is kept as context.
_RULES: tuple[tuple[str, Callable[[str, str], object], re.Pattern], ...] = tuple(
    (rule, needs, re.compile(pattern))
    for rule, needs, pattern in (
        (
            "url_credential",
            lambda s, low: "://" in s and "@" in s,
            r"[A-Za-z][A-Za-z0-9+.-]*://(?P<url_credential_v>[^\s:/@\"'<>]+:[^\s/@\"'<>]+)@",
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
            r"(?P<named_secret_v>[^\s\"'&,;<>]+)",
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
            rf"{_HEX}{{2}}(?P<mac_sep>[:-]){_HEX}{{2}}(?:(?P=mac_sep){_HEX}{{2}}){{4,}}(?![\w-]|:\w)",
        ),
        (
            "ipv6",
            lambda s, low: "::" in s or s.count(":") >= 7,
            rf"(?:{_HEX}{{0,4}}:){{2,7}}(?:{_IPV4}|{_HEX}{{0,4}})(?:%[\w.]+)?(?<![^:]:)(?!\w|:[\w:])",
        ),
        ("ipv4", lambda s, low: s.count(".") >= 3, rf"{_IPV4}(?!\w|\.\d)"),
        (
            "card",
            lambda s, low: True,
            r"[3-6](?:\d{3}(?:[ -]?\d{4}){3}|[47]\d{2}[ -]?\d{6}[ -]?\d{5}|\d{12,18})(?![\w-])",
        ),
        ("hex_id", lambda s, low: True, rf"{_HEX}{{16,}}(?![0-9A-Za-z])"),
    )
)
# What may not come right before a rule's match, checked in code: a look-behind in the pattern would stop
# the engine from skipping ahead. Addresses and ids are often glued to other words with `-`, `_` or `/`
# (`DS-12-10.0.0.1-50010`, `sess_4bf92f35...`), so those rules only refuse what would make the match part
# of a longer number or id; a leak costs more than a masked version string.
_NOT_BEFORE = {
    "ipv4": "0123456789.",
    "ipv6": ":.",
    "uuid": "",
    "hex_id": "",
    "mac": ":-",
    "card": "-_",
    "url_credential": "_-.",
    "auth_header": "_-.",
    "bearer_token": "_-.",
    "jwt": "_-.",
    "aws_key": "_-.",
    "known_key": "_-.",
}
# Of those rules, all but IPv4 also refuse a letter or digit right before: `v1.2.3.4` or `ip_10.0.0.1`
# could well be addresses.
_WORD_START = set(_NOT_BEFORE) - {"ipv4"}
_JWT_FULL = re.compile(_JWT)
_AWS_FULL = re.compile(_AWS_ID)
_KNOWN_FULL = re.compile(_KNOWN_KEYS)
_HEX_LETTER = re.compile("[A-Fa-f]")
_DIGIT = re.compile(r"\d")


def _luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _secret_kind(name: str, value: str, in_url: bool) -> str:
    """The kind of a value found after a secret-like name: by its shape where it has a known one."""
    if _JWT_FULL.fullmatch(value):
        return "jwt"
    if _AWS_FULL.fullmatch(value) or "aws" in name.lower():
        return "aws_key"
    if _KNOWN_FULL.fullmatch(value):
        return "api_key"
    return "url_credential" if in_url else "api_key"


def _valid(rule: str, m: re.Match) -> bool:
    """Checks a regex cannot express cheaply: boundaries, octet ranges, Luhn, real IPv6."""
    text, start = m.string, m.start()
    before = text[start - 1] if start else " "
    if before in _NOT_BEFORE.get(rule, "") or (rule in _WORD_START and before.isalnum()):
        return False
    # A parameter name may end a longer one (`db_password`, `clientSecret`) but not a plain word.
    if rule == "named_secret" and before.isalnum() and not (before.islower() and text[start].isupper()):
        return False
    whole = m[0]
    if rule == "ipv4":
        return all(int(octet) <= 255 for octet in whole.split("."))
    if rule == "ipv6":
        try:
            ipaddress.IPv6Address(whole.split("%")[0])
        except ValueError:
            return False
        return True
    if rule == "card":
        return _luhn(whole.replace(" ", "").replace("-", ""))
    if rule == "hex_id":
        return bool(_HEX_LETTER.search(whole)) and bool(_DIGIT.search(whole))
    return True


class Masker:
    """Masks strings in place of secrets; `counts` holds occurrences per kind (see KINDS)."""

    def __init__(self, extra_patterns: Sequence[str] = (), max_distinct: int = DEFAULT_MAX_DISTINCT):
        self.extra = []
        for pattern in extra_patterns:
            try:
                self.extra.append(re.compile(pattern))
            except re.error as e:
                raise UserError(f"--mask-regex {pattern!r} is not a valid regular expression: {e}") from e
        self.counts: Counter = Counter()
        self._ids: dict[str, dict[str, int]] = {}  # per placeholder KIND
        self._distinct: Counter = Counter()  # per kind
        self.max_distinct = max_distinct
        self._key = os.urandom(16)
        self._callbacks = {
            count: [
                (needs, pattern, functools.partial(self._replace, rule, count))
                for rule, needs, pattern in _RULES
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
        if _SEP not in whole:
            parts = self.mask(_SEP.join((prefix, message, suffix))).split(_SEP)
            if len(parts) == 3:
                return "".join(parts), parts[1]
        # A match ran across a separator (`password:` ending the prefix, its value starting the message) or
        # the input holds the separator: the message alone would not show the secret's context, so the
        # record keeps the whole masked event as its message too.
        text = self.mask(whole.replace(_SEP, " ") if _SEP in whole else whole)
        return text, text

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
            return self.placeholder("api_key" if rule == "known_key" else rule, whole, count)
        value = m[group]
        if rule == "named_secret":
            key_start = m.start()
            while key_start and (m.string[key_start - 1].isalnum() or m.string[key_start - 1] in "_-."):
                key_start -= 1
            in_url = key_start > 0 and m.string[key_start - 1] in "?&"
            kind = _secret_kind(m.string[key_start : m.end("named_secret_k")], value, in_url)
        elif rule == "url_credential":
            kind = rule
        else:
            kind = "jwt" if _JWT_FULL.fullmatch(value) else "bearer_token"
        cut = m.start(group) - m.start()
        return whole[:cut] + self.placeholder(kind, value, count) + whole[cut + len(value) :]
