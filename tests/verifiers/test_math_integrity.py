"""Reward hacks and grading disagreements reported against the math verifier (issue 13), kept as
regressions, plus property tests: distinct numbers never verify equal, NaN never matches."""

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from prime_jax.verifiers import answer as answer_lib
from prime_jax.verifiers import math as math_verifier
from prime_jax.verifiers import symbolic

# (response, ground truth, expected reward): each row is one reported reproduction.
REPRODUCTIONS = [
    # Integers compare exactly; an exact truth needs the exact value.
    ("\\boxed{12346}", "12345", 0.0),
    ("\\boxed{3.0002}", "3", 0.0),
    ("\\boxed{0.50004}", "\\frac{1}{2}", 0.0),
    ("\\boxed{0.5}", "\\frac{1}{2}", 1.0),
    # A decimal truth accepts an exact value it rounds, within relative 1e-4.
    ("\\boxed{\\frac{8}{3}}", "2.6667", 1.0),
    ("\\boxed{\\sqrt{2}}", "1.4142", 1.0),
    ("\\boxed{\\sqrt{2}}", "1.41", 0.0),
    ("\\boxed{\\frac{1}{3}}", "0.3333", 1.0),
    ("\\boxed{\\frac{1}{3}}", "0.333", 0.0),
    ("\\boxed{\\frac{1}{3}}", "0.3", 0.0),
    ("\\boxed{\\pi}", "3.1416", 1.0),
    ("\\boxed{\\pi}", "3.14", 0.0),
    ("\\boxed{2\\frac{1}{2}}", "2.5", 1.0),  # a mixed number
    ("\\boxed{2.6667}", "\\frac{8}{3}", 1.0),  # the same rule, the decimal predicted
    # A comma list is a list; thousands separators only in the strict form.
    ("\\boxed{32, 349}", "32349", 0.0),
    ("\\boxed{32,349}", "32349", 1.0),
    ("\\boxed{32,\\!349}", "32349", 1.0),
    ("\\boxed{3, 4}", "4", 0.0),
    ("\\boxed{3 \\text{ or } 4}", "4", 0.0),
    # Structures use the scalar rules element by element.
    ("\\boxed{(0.6,2.6667]}", "(\\frac{3}{5},\\frac{8}{3}]", 1.0),
    ("\\boxed{(\\frac{3}{5},\\frac{8}{3}]}", "(0.6,2.6667]", 1.0),
    ("\\boxed{(\\sqrt{2}, 3)}", "(1.4142, 3)", 1.0),
    ("\\boxed{\\begin{pmatrix} 0.5 \\\\ 2 \\end{pmatrix}}",
     "\\begin{bmatrix}\\frac12\\\\2\\end{bmatrix}", 1.0),
    ("\\boxed{\\begin{pmatrix} 0.50004 \\\\ 2 \\end{pmatrix}}",
     "\\begin{pmatrix}\\frac12\\\\2\\end{pmatrix}", 0.0),
    ("\\boxed{\\{2, 1\\}}", "\\{1,2\\}", 1.0),
    ("\\boxed{2, 1}", "1, 2", 0.0),
    # Escaped closing brace, percent, hedged equations, units.
    ("\\boxed{185\\}", "185", 1.0),
    ("\\boxed{5000\\%}", "50", 0.0),
    ("\\boxed{50\\%}", "50", 1.0),
    ("\\boxed{5000\\sqrt{2}\\%}", "50\\sqrt{2}", 0.0),
    ("\\boxed{3 = 4}", "4", 0.0),
    ("\\boxed{x = 1 = 4}", "4", 0.0),
    ("\\boxed{x = 4 = 3}", "x = 3", 0.0),
    ("\\boxed{y = 3 = 2x+1}", "y = 2x + 1", 0.0),
    ("\\boxed{F_n = \\sum_{k=0}^{n-1} F_k}", "F_n = \\sum_{k=0}^{n-1} F_k", 1.0),
    ("\\boxed{x = 4}", "4", 1.0),
    ("\\boxed{x + y = 4}", "4", 0.0),  # x + y is no name: an equation, not a stated value
    ("\\boxed{(p, q) = (3, 2)}", "(3,2)", 1.0),
    ("\\boxed{3 meters}", "3 seconds", 0.0),
    ("\\boxed{3\\text{ meters}}", "3\\text{ seconds}", 0.0),
    ("\\boxed{3 meters}", "3", 1.0),
    ("\\boxed{12\\text{ inches}}", "12 inch", 1.0),
    ("\\boxed{3\\text{ m}}", "3 meters", 1.0),
    ("\\boxed{2 ft}", "2\\text{ feet}", 1.0),
    ("\\boxed{10\\text{ cm}}", "10\\text{ units}", 1.0),
    ("\\boxed{5\\text{ cm}^2}", "5\\text{ cm}", 0.0),
    ("\\boxed{5\\text{ cm^2}}", "5\\text{ cm}^2", 1.0),
    ("\\boxed{5\\text{ cm^2}}", "5", 1.0),
    ("\\boxed{3\\text{ dollars}}", "3\\text{ cents}", 0.0),
    # "answer is" stops at the end of its sentence.
    ("The final answer is 34. I hope it is correct.", "34", 1.0),
    ("The final answer is $28 \\%$. I hope it is correct.", "28", 1.0),
    ("Final Answer: The largest $n$ is 34.", "34", 1.0),
    ("**Answer:** **34**", "34", 1.0),
    ("The answer is: **34**.", "34", 1.0),
    ("The answer is 5 or 6.", "6", 0.0),  # two values: a list, never one of them
    ("The answer is 5 and 6.", "5, 6", 1.0),
    # Without a box: the last complete math expression, never digits out of words or groups.
    ("AZYUK2A", "2", 0.0),
    ("$x = \\frac{1}{2}$", "2", 0.0),
    ("$x = \\frac{1}{2}$", "\\frac{1}{2}", 1.0),
    ("\\frac{\\sqrt{505}}{7}", "\\frac{\\sqrt{505}}{7}", 1.0),
    ("Answer $ \n 9 \n $", "9", 0.0),
    # The last box wins (PRIME), even after an earlier correct one.
    ("first \\boxed{5} then \\boxed{6}", "5", 0.0),
    # NaN and infinities.
    ("\\boxed{nan}", "nan", 0.0),
    ("\\boxed{NaN}", "3", 0.0),
    ("\\boxed{inf}", "3", 0.0),
    ("\\boxed{\\infty}", "\\infty", 1.0),
]


@pytest.mark.parametrize("response,truth,expected", REPRODUCTIONS)
def test_reproductions(response, truth, expected):
    verdict = math_verifier.verify_detailed(response, truth, timeout=20.0)
    assert verdict.score == expected, (response, truth, verdict)


@pytest.mark.parametrize("response,expected", [
    ("The final answer is 34. I hope it is correct.", "34"),
    ("The answer is 3.5.", "3.5"),
    ("AZYUK2A", None),
    ("$x = \\frac{1}{2}$", "$x = \\frac{1}{2}$"),  # a bare expression: the whole line
    ("so $x$ is 5.", "5"),
    ("Therefore $x \\geq 5$ is the solution.", "x \\geq 5"),
    ("\\boxed{185\\}", "185\\"),
    ("\\(\\boxed{1}\\) and \\(\\boxed{2}\\)", "2"),
])
def test_extraction(response, expected):
    assert answer_lib.extract_answer(response) == expected


@pytest.mark.parametrize("truth,expected", [
    ("\\boxed{1}, \\boxed{2}", "1, 2"),
    ("\\(\\boxed{1}\\) and \\(\\boxed{-2}\\).", "1, -2"),
    ("\\boxed{1} no no no \\boxed{2}", "2"),
    ("3/4", "3/4"),
])
def test_ground_truth_answer(truth, expected):
    assert answer_lib.ground_truth_answer(truth) == expected


def test_extract_boxed_is_one_pass():
    # 200k unclosed boxes: a rescan per box would take hours; one pass takes well under a second.
    assert answer_lib.extract_boxed("\\boxed{" * 200_000) is None
    assert answer_lib.extract_boxed("\\boxed{" * 200_000 + "7}") == "7"
    assert answer_lib.extract_answer("$\n1$ 2 " * 40_000) == "2"


def _integer_strings(value: int) -> list[str]:
    return [str(value), f"{value:,}", f"{value}.0", f"\\frac{{{2 * value}}}{{2}}", f"x = {value}",
            f"{value}\\%", f"{value} \\text{{ cm}}"]


@settings(max_examples=300, deadline=None)
@given(st.integers(-10**12, 10**12), st.integers(-10**12, 10**12))
def test_distinct_integers_never_verify_equal(a, b):
    for shown in _integer_strings(a):
        assert math_verifier.verify(f"\\boxed{{{shown}}}", str(b)) == float(a == b)


@settings(max_examples=60, deadline=None)
@given(st.integers(-10**6, 10**6), st.integers(-10**6, 10**6),
       st.sampled_from(["{a}, {b}", "{a} \\text{{ or }} {b}", "{a} = {b}", "{a} \\lor {b}",
                        "{a} \\\\ {b}", "x = {a} = {b}", "\\{{{a}, {b}\\}}", "{a} \\to {b}"]))
def test_two_values_never_match_one_of_them(a, b, hedge):
    if a != b:
        assert math_verifier.verify("\\boxed{" + hedge.format(a=a, b=b) + "}", str(b)) == 0.0


@settings(max_examples=300, deadline=None)
@given(st.integers(-10**6, 10**6), st.integers(1, 10**4), st.integers(1, 6))
def test_near_integers_never_verify_equal_to_the_integer(whole, fraction, digits):
    near = f"{whole}.{fraction:0{max(digits, len(str(fraction)))}d}"
    assert math_verifier.verify(f"\\boxed{{{near}}}", str(whole)) == 0.0
    assert math_verifier.verify(f"\\boxed{{{whole}}}", near) == 0.0


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(["nan", "NaN", "-nan", "inf", "-inf", "infinity", "1e999", "\\text{nan}"]),
       st.floats(allow_nan=False, allow_infinity=False, width=32) | st.integers())
def test_nan_and_inf_strings_never_match_a_finite_truth(shown, truth):
    assert math_verifier.verify(f"\\boxed{{{shown}}}", repr(truth)) == 0.0
    assert math_verifier.verify(f"The answer is {shown}.", repr(truth)) == 0.0


@pytest.mark.parametrize("truth", ["nan", "NaN", "\\infty", "0", "x"])
def test_nan_never_equals_anything(truth):
    assert math_verifier.verify("\\boxed{nan}", truth) == 0.0
    assert math_verifier.verify(f"\\boxed{{{truth}}}", "nan") == 0.0
    assert not math.isnan(math_verifier.verify("\\boxed{nan}", truth))


@pytest.mark.parametrize("junk", ["\\lor", "\\vee", "\\to", "\\Rightarrow", "\\\\", "&", "\\mid",
                                  "\\cup", "\\equiv", "\\therefore", "\\dots", "\\hspace{1cm}"])
def test_a_partly_read_answer_never_matches(junk):
    # math-verify reads `3 <junk> 4` as 4; the 3 would be free for any hedge.
    assert math_verifier.verify(f"\\boxed{{3 {junk} 4}}", "4", timeout=20.0) == 0.0


def test_reads_every_part():
    assert not symbolic.reads_every_part("3 \\lor 4")
    assert symbolic.reads_every_part("x^2 + 2x + 1")
    assert symbolic.reads_every_part("\\frac{\\sqrt{3}}{2}")
    assert not symbolic.reads_every_part("+".join("x" * 30))  # too many parts to try


def test_a_large_set_is_matched_in_linear_time_first():
    members = [str(i) for i in range(400)]
    response = "\\boxed{\\{" + ",".join(members) + "\\}}"
    truth = "\\{" + ",".join(reversed(members)) + "\\}"
    assert math_verifier.verify_detailed(response, truth, timeout=20.0).status == "match_structure"
    assert math_verifier.verify(response, truth.replace("399", "400"), timeout=20.0) == 0.0
