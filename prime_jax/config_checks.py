"""Checks for the frozen config dataclasses' ``__post_init__``: each raises ``ValueError`` whose
message starts with ``Owner.field=value`` and says the rule broken, e.g.
``PolicyLossConfig.clip_eps=0.0: must be > 0``. Pure Python; any layer may import it.

Comparisons are written so that NaN fails every bound (``not value > 0`` rather than
``value <= 0``).
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence


def _name(owner: str, field: str, value: Any) -> str:
    return f"{owner}.{field}={value!r}"


def check_choice(owner: str, field: str, value: Any, choices: Sequence) -> None:
    """``value`` is one of ``choices``."""
    if value not in choices:
        raise ValueError(f"{_name(owner, field, value)}: expected one of {tuple(choices)}")


def check_at_least(owner: str, field: str, value: Any, low: float) -> None:
    """``value >= low`` (counts: ``low`` 1 for sizes, 0 for "0 turns it off")."""
    if not value >= low:
        raise ValueError(f"{_name(owner, field, value)}: must be >= {low}")


def check_positive(owner: str, field: str, value: Any) -> None:
    """``value > 0`` (coefficients, learning rates, temperatures of a softmax)."""
    if not value > 0:
        raise ValueError(f"{_name(owner, field, value)}: must be > 0")


def check_in_range(owner: str, field: str, value: Any, low: float, high: float, *,
                   include_low: bool = True, include_high: bool = True) -> None:
    """``low <= value <= high``, either end open when its ``include_*`` is False."""
    above = value >= low if include_low else value > low
    below = value <= high if include_high else value < high
    if not (above and below):
        interval = f"{'[' if include_low else '('}{low}, {high}{']' if include_high else ')'}"
        raise ValueError(f"{_name(owner, field, value)}: must be in {interval}")


def check_fields_at_least(config: Any, lows: Mapping[str, float]) -> None:
    """:func:`check_at_least` for each ``field: low`` of a dataclass instance (its class names
    the owner)."""
    owner = type(config).__name__
    for field, low in lows.items():
        check_at_least(owner, field, getattr(config, field), low)


def check_not_empty(owner: str, field: str, value: Any) -> None:
    """``value`` is a non-empty string or sequence (a step delimiter, a path, a name)."""
    if not value:
        raise ValueError(f"{_name(owner, field, value)}: must not be empty")
