"""prime_jax/config_checks.py: each check passes good values and names Owner.field=value and the
rule for bad ones (NaN included)."""

import dataclasses
import math
import re

import pytest

from prime_jax.config_checks import (check_at_least, check_choice, check_fields_at_least, check_in_range,
                                     check_not_empty, check_positive)


def test_good_values_pass():
    check_choice("C", "kind", "a", ("a", "b"))
    check_at_least("C", "n", 0, 0)
    check_positive("C", "lr", 1e-9)
    check_in_range("C", "top_p", 1.0, 0.0, 1.0, include_low=False)
    check_not_empty("C", "delimiter", "\n")


@pytest.mark.parametrize("call, message", [
    (lambda: check_choice("C", "kind", "z", ["a", "b"]), "C.kind='z': expected one of ('a', 'b')"),
    (lambda: check_at_least("C", "n", 0, 1), "C.n=0: must be >= 1"),
    (lambda: check_at_least("C", "n", math.nan, 1), "C.n=nan: must be >= 1"),
    (lambda: check_positive("C", "lr", 0.0), "C.lr=0.0: must be > 0"),
    (lambda: check_positive("C", "lr", math.nan), "C.lr=nan: must be > 0"),
    (lambda: check_in_range("C", "top_p", 0.0, 0.0, 1.0, include_low=False), "C.top_p=0.0: must be in (0.0, 1.0]"),
    (lambda: check_in_range("C", "f", 1.0, 0, 1, include_high=False), "C.f=1.0: must be in [0, 1)"),
    (lambda: check_not_empty("C", "delimiter", ""), "C.delimiter='': must not be empty"),
])
def test_bad_values_name_the_field_and_the_rule(call, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        call()


def test_fields_at_least_names_the_dataclass():
    @dataclasses.dataclass(frozen=True)
    class LoopConfig:
        steps: int = 1
        every: int = 0

    check_fields_at_least(LoopConfig(), {"steps": 1, "every": 0})
    with pytest.raises(ValueError, match="LoopConfig.every=-1: must be >= 0"):
        check_fields_at_least(LoopConfig(every=-1), {"steps": 1, "every": 0})
