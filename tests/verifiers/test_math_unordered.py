"""Issue 28's math false negatives (unordered solution lists, other separators, decimals against
exact truths) and the adversarial answers the new rules must still reject."""

import pytest

from prime_jax.verifiers import math as math_verifier

SOLUTIONS = "(3,37,3,13), (3,17,3,7), (3,3,2,3), (3,11,3,5)"

ACCEPTED = [
    # A truth listing solutions (tuples, assignments) is a multiset: any order, `,` or `;`.
    ("\\boxed{(3,17,3,7), (3,3,2,3), (3,11,3,5), (3,37,3,13)}", SOLUTIONS),
    ("\\boxed{(0;0;0), (1;1;1)}", "(0,0,0), (1,1,1)"),
    ("\\boxed{(1,1,1), (0,0,0)}", "(0;0;0); (1;1;1)"),
    ("\\boxed{a_{37} = 19, a_3 = 2}", "a_3 = 2, a_{37} = 19"),
    # A decimal equals an exact value it correctly rounds, within relative 1e-4 (both ways).
    ("\\boxed{0.0833333333333333}", "\\frac{1}{12}"),
    ("\\boxed{2.6667}", "\\frac{8}{3}"),
    ("\\boxed{\\frac{8}{3}}", "2.6667"),
    ("\\boxed{1.4142}", "\\sqrt{2}"),
    ("\\boxed{0.08333}", "\\frac{1}{12}"),
    ("\\boxed{0.6666666666666666}", "\\frac{2}{3}"),  # Python's repr of 2/3
    ("\\boxed{2.6666666666666665}", "\\frac{8}{3}"),
    ("\\boxed{0.66666666667}", "\\frac{2}{3}"),
    ("\\boxed{(0.6, 2.6667]}", "(\\frac{3}{5}, \\frac{8}{3}]"),
]

REJECTED = [
    # Plain values keep their order (hendrycks MATH's test_order); multisets are one-to-one,
    # of the same size, and names must agree.
    ("\\boxed{3, -2}", "-2, 3"),
    ("\\boxed{x = 3, x = -2}", "-2, 3"),
    ("\\boxed{(1,2), (1,2)}", "(1,2), (2,1)"),
    ("\\boxed{1, 1, 1}", "1, 2, 3"),
    ("\\boxed{1, 2}", "1, 2, 2"),
    ("\\boxed{1, 2, 2}", "1, 2"),
    ("\\boxed{(3,17,3,7), (3,3,2,3), (3,11,3,5)}", SOLUTIONS),
    ("\\boxed{(3,17,3,7), (3,3,2,3), (3,11,3,5), (3,11,3,5)}", SOLUTIONS),
    ("\\boxed{(17,3,7,3), (3,3,2,3), (3,11,3,5), (3,37,3,13)}", SOLUTIONS),
    ("\\boxed{a_3 = 19, a_{37} = 2}", "a_3 = 2, a_{37} = 19"),
    ("\\boxed{19, 2}", "a_3 = 2, a_{37} = 19"),
    ("\\boxed{x = 3, y = 3}", "x = 3, y = 4"),
    ("\\boxed{(0;0)}", "(0,0,0)"),
    ("\\boxed{(1;2;3)}", "(1,3,2)"),
    ("\\boxed{}", "1, 2"),
    ("\\boxed{nan, nan}", "1, 2"),
    ("\\boxed{NaN, 1}", "NaN, 1"),
    ("\\boxed{\\infty, 1}", "2, 1"),
    ("\\boxed{inf}", "\\frac{1}{12}"),
    ("\\boxed{" + ", ".join(map(str, range(3000))) + "}", "1, 2"),
    ("\\boxed{" + ", ".join(["1"] * 500) + "}", ", ".join(map(str, range(500)))),
    # Decimals: correctly rounded AND within relative 1e-4; an integer truth stays exact.
    ("\\boxed{0.08}", "\\frac{1}{12}"),
    ("\\boxed{0.0833}", "\\frac{1}{12}"),
    ("\\boxed{0.0834}", "\\frac{1}{12}"),
    ("\\boxed{2.7}", "\\frac{8}{3}"),
    ("\\boxed{2.6666}", "\\frac{8}{3}"),
    ("\\boxed{2.66667}", "2.6667"),
    ("\\boxed{3.0002}", "3"),
    ("\\boxed{2.99999999}", "3"),
    ("\\boxed{1.41}", "\\sqrt{2}"),
    ("\\boxed{1.4143}", "\\sqrt{2}"),
    ("\\boxed{0.50004}", "\\frac{1}{2}"),
    ("\\boxed{0.2}", "\\frac{1}{4}"),
    ("\\boxed{0.6666}", "\\frac{2}{3}"),  # not correctly rounded (0.6667 is)
    ("\\boxed{0.0000}", "\\frac{1}{100000}"),
    ("\\boxed{2.9999999}", "3"),
    ("\\boxed{3}", "\\frac{8}{3}"),
]


@pytest.mark.parametrize("response,truth", ACCEPTED)
def test_accepted(response, truth):
    assert math_verifier.verify_detailed(response, truth, timeout=20.0).score == 1.0


@pytest.mark.parametrize("response,truth", REJECTED, ids=lambda value: str(value)[:40])
def test_rejected(response, truth):
    assert math_verifier.verify_detailed(response, truth, timeout=20.0).score == 0.0


def test_huge_unordered_list_is_bounded():
    """Two 1500-element lists that differ in one element: the multiset match stays linear for
    the identical normal forms and fails on the odd one out."""
    truth = ", ".join(f"({i},{i + 1})" for i in range(1500))
    response = "\\boxed{" + ", ".join(f"({i},{i + 1})" for i in reversed(range(1, 1500))) \
        + ", (0,2)}"
    assert math_verifier.verify_detailed(response, truth, timeout=5.0).score == 0.0


@pytest.mark.parametrize("response, truth", [
    (r"\boxed{(1,2),(1,2)}", "(1,2),(3,4)"),            # one right tuple repeated to fill the slots
    (r"\boxed{(1,2),(3,4),(5,6)}", "(1,2),(3,4)"),      # every solution plus a spare
    (r"\boxed{(3,4)}", "(1,2),(3,4)"),                  # a partial list
    (r"\boxed{a=1, a=1}", "a=1, b=2"),                  # one assignment twice
    (r"\boxed{x=1, y=2}", "a=1, b=2"),                  # right values under other names
    (r"\boxed{(nan,nan),(nan,nan)}", "(1,2),(3,4)"),    # NaN inside tuples
    (r"\boxed{(2,1),(4,3)}", "(1,2),(3,4)"),            # tuples are ordered inside
    (r"\boxed{(0;0)}", "(0,0,0)"),                      # ';' tuple one element short
    (r"\boxed{" + ",".join(["(1,2)"] * 5000) + "}", "(1,2),(3,4)"),  # a huge list
])
def test_list_attacks_score_zero(response, truth):
    """A policy probing the multiset rule for partial credit that reaches 1.0 gets 0."""
    assert math_verifier.verify(response, truth) == 0.0
