"""Exact numbers for the math verifier: parsing and the one tolerance.

`parse_number`: integers, decimals, `a/b`, `\\frac{a}{b}` and mixed
numbers become exact fractions (`2\\frac{1}{2}` is the mixed number 5/2, as NeMo-Skills reads
it; Math-Verify reads a product). Values compare exactly, with one tolerance, the same whichever
side is the decimal: a decimal with d digits after the point matches an exact value that is not
a decimal (an integer, a fraction such as 8/3, or `\\sqrt{2}` in the symbolic step) iff it is
that value correctly rounded to d digits (within half a unit of the d-th digit; a printed
double of 15+ significant digits, such as `0.6666666666666666` for 2/3, within relative 1e-12)
and within the reference graders' relative 1e-4. So `2.6667`, `0.3333`, `0.0833333333333333`
match `\\frac{8}{3}`, `\\frac13`, `\\frac{1}{12}`; `2.7`, `0.333`, `0.08`, `0.0833`, `0.6666`
do not; `3.0002` and `2.9999999` never match `3`. Two decimals must be equal.
Deliberate difference from the reference graders (PRIME's `math_equal`, Qwen-Math, NeMo-Skills
use `isclose(rel_tol=1e-4)` on everything; Math-Verify rounds to 6 decimals): the correct
rounding above, so `12346` != `12345`, `0.50004` != `\\frac12`, and a decimal never approximates
another decimal, nor an integer except as a printed double (`2.999999999999999` is 3).
"""

from __future__ import annotations

import dataclasses
import re
from fractions import Fraction

# Relative tolerance of the reference graders, used only between a decimal and an exact value.
REL_TOL = Fraction(1, 10_000)
# A decimal of 15 or more significant digits (a printed double) within relative 1e-12 of the
# exact value counts as correctly rounded: `repr` gives 0.6666666666666666 for 2/3.
DOUBLE_DIGITS, DOUBLE_SLACK = 15, Fraction(1, 10 ** 12)


@dataclasses.dataclass(frozen=True)
class Number:
    """An exactly parsed number; `decimals` is the digit count after a written decimal point
    (None for integers and fractions)."""

    value: Fraction
    decimals: int | None


_INTEGER = r"(?:\d{1,3}(?:,\d{3})+|\d{1,3}(?:\{,\}\d{3})+|\d+)"
DECIMAL_RE = re.compile(r"^([-+]?)(" + _INTEGER + r")?(?:\.(\d+))?$")
_FRACTION_RE = re.compile(r"^([-+]?)(?:(\d+)\s*)?\\frac\{([-+]?[\d.]+)\}\{([-+]?[\d.]+)\}$")
_SLASH_RE = re.compile(r"^([-+]?\d+)/(\d+)$")


def _decimal(text: str) -> Number | None:
    match = DECIMAL_RE.match(text)
    if not match or not (match.group(2) or match.group(3)):
        return None
    sign, whole, digits = match.groups()
    whole = (whole or "0").replace("{,}", "").replace(",", "")
    value = Fraction(whole + "." + digits if digits else whole)
    return Number(-value if sign == "-" else value, len(digits) if digits else None)


def _fraction(text: str) -> Number | None:
    match = _FRACTION_RE.match(text)
    if match:
        sign, whole, top, bottom = match.groups()
        if Fraction(bottom) == 0:
            return None
        value = Fraction(top) / Fraction(bottom) + int(whole or 0)  # mixed number 2\frac12
        return Number(-value if sign == "-" else value, None)
    match = _SLASH_RE.match(text)
    if match and int(match.group(2)) != 0:
        return Number(Fraction(int(match.group(1)), int(match.group(2))), None)
    return None


def parse_number(text: str) -> Number | None:
    """Parses a `normalize_answer`-ed plain number: integer, decimal, `a/b`, `\\frac{a}{b}`,
    mixed number (`2\\frac{1}{2}` is 5/2). None otherwise."""
    if not text or len(text) > 100:
        return None
    try:
        return _decimal(text) or _fraction(text)
    except (ValueError, ZeroDivisionError):
        return None


def is_nan(text: str) -> bool:
    """A normalised answer that spells not-a-number (it must never match anything)."""
    return text.lstrip("+-").lower() == "nan"


def close_to_decimal(value: Fraction, decimal: Number) -> bool:
    """Whether an exact non-decimal `value` and a `decimal` match (module docstring):
    |value - decimal| <= min(rounding, 1e-4 * max(|value|, |decimal|)), where rounding is half
    a unit of the decimal's last digit, or 1e-12 * |value| for a decimal of a double's 15 or
    more significant digits (a printed double such as 0.6666666666666666 is not always
    correctly rounded): the decimal is the value correctly rounded, as close as the reference
    graders' `isclose` asks."""
    if decimal.decimals is None:
        return False
    rounding = Fraction(1, 2 * 10 ** decimal.decimals)
    digits = len(str((abs(decimal.value) * 10 ** decimal.decimals).numerator))
    if digits >= DOUBLE_DIGITS:
        rounding = max(rounding, DOUBLE_SLACK * abs(value))
    relative = REL_TOL * max(abs(value), abs(decimal.value))
    return abs(value - decimal.value) <= min(rounding, relative)


def numbers_equal(pred: Number, truth: Number) -> bool:
    """Exact equality, or a decimal on either side `close_to_decimal` an exact value."""
    if pred.value == truth.value:
        return True
    if pred.decimals is None:
        return close_to_decimal(pred.value, truth)
    return truth.decimals is None and close_to_decimal(truth.value, pred)
