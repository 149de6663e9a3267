"""Math verifier: a MATH-style equivalence table, extraction, and hostile inputs."""

import threading
import time

import pytest

from prime_jax.verifiers import answer as answer_lib
from prime_jax.verifiers import math as math_verifier
from prime_jax.verifiers.symbolic import SymbolicWorker

# (model's final answer, ground truth, expected reward)
EQUIVALENCE_TABLE = [
    ("\\frac{1}{2}", "0.5", 1.0),
    ("\\dfrac{1}{2}", "\\frac12", 1.0),
    ("\\tfrac{3}{4}", "0.75", 1.0),
    ("1/2", "\\frac{1}{2}", 1.0),
    ("-\\frac{2}{3}", "\\frac{-2}{3}", 1.0),
    ("0.333", "\\frac{1}{3}", 0.0),
    ("0.33333", "\\frac{1}{3}", 1.0),  # a correctly rounded decimal within relative 1e-4
    ("\\frac{8}{3}", "2.6667", 1.0),  # a decimal truth accepts the value it rounds
    ("\\frac{1}{3}", "0.3", 0.0),  # ... within the reference graders' relative 1e-4
    ("1,000", "1000", 1.0),
    ("1,234,567", "1234567", 1.0),
    ("1000.00001", "1000", 0.0),
    ("1001", "1000", 0.0),
    ("50\\%", "50", 1.0),
    ("50\\%", "0.5", 0.0),  # % is a unit mark, not a second reading
    ("25\\%", "0.5", 0.0),
    ("5\\text{ cm}", "5", 1.0),
    ("5 \\text{cm}^2", "5", 1.0),
    ("12 inches", "12", 1.0),
    ("\\$5.00", "5", 1.0),
    ("30^\\circ", "30", 1.0),
    ("30^{\\circ}", "30", 1.0),
    ("45^\\circ", "30", 0.0),
    ("x = 3", "3", 1.0),
    ("3", "x=3", 1.0),
    ("y = 2x + 1", "2x+1", 1.0),
    ("x = 4", "3", 0.0),
    ("\\sqrt{8}", "2\\sqrt{2}", 1.0),
    ("\\sqrt{12}", "3\\sqrt{2}", 0.0),
    ("\\frac{\\sqrt{3}}{2}", "\\sqrt{3}/2", 1.0),
    ("\\frac{\\pi}{2}", "\\pi/2", 1.0),
    ("2\\pi", "\\pi", 0.0),
    ("\\pi r^2", "r^2\\pi", 1.0),
    ("(x+1)^2", "x^2+2x+1", 1.0),
    ("(x+1)^2", "x^2+1", 0.0),
    ("10^{10}", "10000000000", 1.0),
    ("(1, 2]", "(1,2]", 1.0),
    ("[1, 2]", "(1,2)", 0.0),
    ("(-\\infty, 3)", "(-\\infty,3)", 1.0),
    ("(2, 1)", "(1,2)", 0.0),
    ("(1, 2)", "(1,2)", 1.0),
    ("\\{1, 2\\}", "\\{2,1\\}", 1.0),
    ("\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}", "\\begin{pmatrix}1\\\\2\\end{pmatrix}", 1.0),
    ("\\begin{pmatrix} 1 \\\\ 3 \\end{pmatrix}", "\\begin{pmatrix}1\\\\2\\end{pmatrix}", 0.0),
    ("\\left( 3, \\frac{\\pi}{2} \\right)", "(3,\\frac{\\pi}{2})", 1.0),
    ("\\text{(A)}", "A", 1.0),
    ("\\text{(B)}", "A", 0.0),
    ("2", "3", 0.0),
    ("-7", "-7", 1.0),
    ("7", "-7", 0.0),
    ("3.14", "\\pi", 0.0),
    ("\\frac{1}{\\sqrt{2}}", "\\frac{\\sqrt{2}}{2}", 1.0),
    ("e^{i\\pi}", "2", 0.0),
]


@pytest.mark.parametrize("pred,truth,expected", EQUIVALENCE_TABLE)
def test_equivalence_table(pred, truth, expected):
    response = f"Some reasoning ... so the answer is $\\boxed{{{pred}}}$."
    assert math_verifier.verify(response, truth, timeout=10.0) == expected, (pred, truth)


@pytest.mark.parametrize("response,expected", [
    ("we get \\boxed{\\frac{1}{2}} and then \\boxed{3}", "3"),
    ("\\boxed{\\frac{a^{2}}{b_{1}}}", "\\frac{a^{2}}{b_{1}}"),
    ("\\fbox{42}", "42"),
    ("\\boxed 7 is it", "7"),
    ("the final answer is $12$.", "12"),
    ("Answer: 2x+1\nthanks", "2x+1"),
    ("we try 3, then 4, finally 5.", "5"),
    ("no digits here", None),
    ("\\boxed{unbalanced and \\boxed{9}", "9"),
])
def test_extract_answer(response, expected):
    assert answer_lib.extract_answer(response) == expected


def test_ground_truth_may_be_boxed():
    assert math_verifier.verify("\\boxed{4}", "\\boxed{4}") == 1.0


HOSTILE = [
    ("tower", "\\boxed{9^{9^{9^{9}}}}", "1"),
    ("tower_vs_tower", "\\boxed{9^{9^{9^{9}}}}", "9^{9^{9^{8}}}"),
    ("factorial", "\\boxed{(10^{10})!}", "2"),
    ("nested_braces", "\\boxed{" + "{" * 20_000 + "1" + "}" * 20_000 + "}", "2"),
    ("unbalanced_braces", "\\boxed{" + "{" * 20_000 + "1", "2"),
    ("megabyte", "x" * 1_000_000 + "\\boxed{" + "y+" * 500_000 + "}", "2"),
    ("megabyte_digits", "9" * 1_000_000, "2"),
    ("deep_parens", "\\boxed{" + "(" * 990 + "1" + ")" * 990 + "}", "2"),
]


@pytest.mark.parametrize("name,response,truth", HOSTILE, ids=[h[0] for h in HOSTILE])
def test_hostile_inputs_score_zero_quickly(name, response, truth):
    start = time.monotonic()
    verdict = math_verifier.verify_detailed(response, truth, timeout=1.0)
    elapsed = time.monotonic() - start
    assert verdict.score == 0.0, verdict
    # A bound, not a speed measurement: unbounded work on these inputs takes hours; the margin
    # covers restarting a killed worker on a loaded machine.
    assert elapsed < 60.0, (name, elapsed)


def test_timeout_is_counted_and_worker_recovers():
    before = math_verifier.STATS.get("math", "timeout")
    verdict = math_verifier.verify_detailed("\\boxed{9^{9^{9^{9}}}}", "9^{9^{9^{8}}}",
                                            timeout=0.5)
    assert verdict.status == "timeout"
    assert math_verifier.STATS.get("math", "timeout") == before + 1
    # The killed worker is replaced: a symbolic check works again.
    assert math_verifier.verify("\\boxed{\\sqrt{8}}", "2\\sqrt{2}") == 1.0


def test_symbolic_worker_crash_scores_zero_and_never_raises():
    worker = SymbolicWorker()
    results = []
    try:
        worker.equivalent("1", "1", timeout=30.0)  # started and warm
        victim = worker._proc
        thread = threading.Thread(target=lambda: results.append(
            worker.equivalent("9^{9^{9^{9}}}", "2", timeout=30.0)))
        thread.start()
        time.sleep(0.5)
        victim.kill()  # dies mid-request, as a segfault or the OOM killer would
        thread.join()
        assert results == [(False, "crash")]
    finally:
        worker.close()


def test_symbolic_worker_restarts_after_being_killed():
    worker = SymbolicWorker()
    try:
        assert worker.equivalent("\\sqrt{8}", "2\\sqrt{2}", timeout=30.0) == (True, "ok")
        worker._proc.kill()
        worker._proc.wait()
        assert worker.equivalent("\\sqrt{8}", "2\\sqrt{2}", timeout=30.0) == (True, "ok")
    finally:
        worker.close()
