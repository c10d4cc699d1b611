"""Numbers as a reader sees them: token lengths, durations, bytes, dollars, ratios. Language-neutral: the
units used (k, ms, s, GiB, $, ×, %) read the same in English and Japanese."""

from __future__ import annotations

import math

MINUS = "\u2212"
# Between a number and its unit, so that a line never breaks between "84.6" and "%".
NBSP = "\u00a0"


def tokens(n: float) -> str:
    """1024 → "1k", 16384 → "16k" (binary kilo, as context windows are counted); 3000 → "2.9k"."""
    if n >= 1024:
        k = n / 1024
        return f"{k:.0f}k" if float(k).is_integer() else f"{k:.1f}k"
    return f"{n:.0f}"


def count(n: float) -> str:
    return f"{n:,.0f}"


def params(n: float) -> str:
    """Parameter counts: 129135360 → "129M"."""
    return f"{n / 1e9:.3g}B" if n >= 1e9 else f"{n / 1e6:.3g}M"


def seconds(s: float) -> str:
    if s < 1:
        return f"{s * 1000:.3g}{NBSP}ms"
    return f"{s:.3g}{NBSP}s"


def ms(x: float) -> str:
    return f"{x:.3g}{NBSP}ms"


def rate(x: float) -> str:
    """Tokens per second."""
    return f"{x:,.0f}" if x >= 100 else f"{x:.3g}"


def size(b: float) -> str:
    for unit, scale in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if b >= scale:
            return f"{b / scale:.3g}{NBSP}{unit}"
    return f"{b:.0f}{NBSP}B"


def usd(x: float) -> str:
    """Dollars with enough digits to tell small costs apart, never in exponent notation."""
    if x >= 1 or x == 0:
        return f"${x:,.2f}"
    # Three significant digits, then trailing zeros dropped down to cents: $0.35, $0.00163, $0.00002.
    decimals = -math.floor(math.log10(x)) + 2
    text = f"{x:.{decimals}f}".rstrip("0")
    whole, _, frac = text.partition(".")
    return f"${whole}.{frac.ljust(2, '0')}"


def ratio(x: float) -> str:
    """How many times: 3.557 → "3.6", 20.07 → "20" (the "×" or "倍" comes with the sentence)."""
    return f"{x:.2g}" if x < 10 else f"{x:.0f}"


def percent(x: float) -> str:
    return f"{x * 100:.1f}{NBSP}%"


def signed(x: float, decimals: int = 1) -> str:
    """A signed number with a real minus sign: "+1.2", "−0.4"."""
    text = f"{abs(x):.{decimals}f}"
    if float(text) == 0:
        return text
    return (MINUS if x < 0 else "+") + text


def plain(x: float) -> str:
    return f"{x:.3g}"
