"""Issue 13's reward hacks (wrong programs that scored 1.0) and grading like the references."""

import json
import math
import pathlib
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from prime_jax.verifiers import VerifierPool, code

sys.path.insert(0, str(pathlib.Path(__file__).parent))
import pool_helpers  # noqa: E402


def make_tests(inputs, outputs, fn_name=None):
    extra = {"fn_name": fn_name} if fn_name else {}
    return json.dumps({"inputs": inputs, "outputs": outputs, **extra})


def program(source):
    return f"```python\n{source}\n```"


sandbox_tests = pytest.mark.skipif(bool(pool_helpers.sandbox_missing()),
                                   reason=pool_helpers.sandbox_missing())


@sandbox_tests
def test_nan_and_inf_match_no_number():
    for printed in ("nan", "NaN", "inf", "-inf", "1e999"):
        response = program(f"print({printed!r})")
        assert code.verify(response, make_tests(["3"], ["9"])) == 0.0
    assert code.verify(program("print('nan')"), make_tests(["3"], ["nan"])) == 1.0


@sandbox_tests
def test_nan_through_the_pool():
    with VerifierPool(num_workers=1, abilities=("code",)) as pool:
        assert pool.score([(program("print('nan')"), make_tests(["3"], ["9"]), "code"),
                           (program("print(9)"), make_tests(["3"], ["9"]), "code")]) == [0.0, 1.0]


@sandbox_tests
def test_integers_compare_exactly_decimals_with_tolerance():
    assert code.verify(program("print(999999000)"), make_tests([""], ["999999999"])) == 0.0
    assert code.verify(program("print(999999000.0)"), make_tests([""], ["999999999"])) == 0.0
    assert code.verify(program("print(3.0000001)"), make_tests([""], ["3.0"])) == 1.0
    assert code.verify(program("print('0.3333333')"), make_tests([""], ["0.33333333"])) == 1.0
    assert code.verify(program("print(3)"), make_tests([""], ["3.0"])) == 1.0


@sandbox_tests
def test_more_than_ten_tests_a_failure_never_scores_one():
    double = program("print(2 * int(input()))")
    inputs = [str(i) for i in range(15)]
    outputs = [str(2 * i) for i in range(14)] + ["wrong"]
    assert code.verify(double, make_tests(inputs, outputs)) == pytest.approx(0.9)
    assert code.verify(double, make_tests(inputs, [str(2 * i) for i in range(15)])) == 1.0


@sandbox_tests
def test_reading_planted_training_data_does_not_pay(tmp_path):
    """The issue's hack: find the ground truth on disk, print the stored output."""
    truth = make_tests(["31337"], ["42"])
    (tmp_path / "train.jsonl").write_text(json.dumps({"ground_truth": truth}) + "\n")
    cheat = program(f"""
import json, os
stdin = input()
for root in ({str(tmp_path)!r}, '/tmp', '/data', '/'):
    for d, _, files in os.walk(root):
        for f in files:
            if f.endswith('.jsonl'):
                for line in open(os.path.join(d, f)):
                    t = json.loads(json.loads(line)['ground_truth'])
                    if stdin in t['inputs']:
                        print(t['outputs'][t['inputs'].index(stdin)]); raise SystemExit
print('not found')""")
    assert code.verify(cheat, truth) == 0.0


@sandbox_tests
def test_leetcode_style_answers_need_no_imports():
    response = program("class Solution:\n    def top(self, nums: List[int], k: int) -> List[int]:"
                       "\n        return [x for x, _ in Counter(nums).most_common(k)]")
    assert code.verify(response, make_tests([[[1, 1, 2], 1]], [[1]], "top")) == 1.0
    deep = program("def depth(n):\n    return 0 if n == 0 else 1 + depth(n - 1)\n"
                   "print(depth(int(input())))")
    assert code.verify(deep, make_tests(["20000"], ["20000"])) == 1.0


@sandbox_tests
def test_null_stdin_is_empty():
    response = program("import sys\nprint(len(sys.stdin.read()))")
    assert code.verify(response, make_tests([None], ["0"])) == 1.0


@sandbox_tests
def test_livecodebench_call_format():
    response = program("class Solution:\n    def add(self, xs: List[int], k: int) -> List[int]:"
                       "\n        return [x + k for x in xs]")
    lcb = make_tests(["[1, 2]\n3", "[]\n0"], ["[4, 5]", "[]"], "add")
    assert code.verify(response, lcb) == 1.0
    assert code.verify(response, make_tests(["[1, 2]\n3"], ["[4, 6]"], "add")) == 0.0


@sandbox_tests
@pytest.mark.parametrize("returned", ["float('nan')", "float('inf')", "[float('nan'), 0.2]", "'0.1'",
                                      "[0.1, 0.2, 0.3]", "{'x': 0.1}", "10 ** 400", "None"])
def test_returned_values_that_game_the_float_tolerance_score_zero(returned):
    """Call mode compares floats with a tolerance: nan, inf, strings, extra elements, other
    shapes and huge integers must still fail a [0.1, 0.2] / 0.1 expectation."""
    response = program(f"def f(x):\n    return {returned}")
    assert code.verify(response, make_tests([[1]], [[0.1, 0.2]], "f")) == 0.0
    assert code.verify(response, make_tests([[1]], [0.1], "f")) == 0.0


@sandbox_tests
def test_returned_floats_within_tolerance_pass_and_integers_stay_exact():
    assert code.verify(program("def f(x):\n    return [0.1000000001, 0.2]"),
                       make_tests([[1]], [[0.1, 0.2]], "f")) == 1.0
    assert code.verify(program("def f(x):\n    return 999999000.0"), make_tests([[1]], [999999999], "f")) == 0.0


# ---------------------------------------------------------------------------- property tests
TOKENS = st.one_of(st.integers(-10 ** 12, 10 ** 12).map(str),
                   st.floats(allow_nan=False, allow_infinity=False, width=32).map(repr),
                   st.text("abcxyz", min_size=1, max_size=4))
WRONG = ["nan", "inf", "-inf", "", "0", "1e999", "x"]


@given(st.lists(st.booleans(), min_size=1, max_size=30))
def test_reward_is_one_only_when_every_test_passes(passed):
    assert (code.reward(passed) == 1.0) == all(passed)
    assert 0.0 <= code.reward(passed) <= 1.0


@given(want=TOKENS, got=st.one_of(TOKENS, st.sampled_from(WRONG)))
def test_a_token_matches_only_an_equal_value(want, got):
    if code.tokens_equal(got, want):
        if got != want:
            x, y = float(got), float(want)
            assert math.isfinite(x) and math.isfinite(y)
            if code._is_integer(want):
                assert x == y
            else:
                assert abs(x - y) <= 1e-6 * max(1.0, abs(y))


@sandbox_tests
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(outputs=st.lists(TOKENS, min_size=1, max_size=14), data=st.data())
def test_a_program_that_fails_any_test_never_scores_one(outputs, data):
    """Random tests; the program prints the expected output except on one test, where it
    prints a random other token that is not a tolerated spelling of the expected one."""
    wrong_at = data.draw(st.integers(0, len(outputs) - 1))
    wrong = data.draw(st.one_of(TOKENS, st.sampled_from(WRONG)).filter(
        lambda token: not code.tokens_equal(token, outputs[wrong_at])))
    printed = [wrong if i == wrong_at else out for i, out in enumerate(outputs)]
    response = program(f"print({printed!r}[int(input())])")
    score = code.verify(response, make_tests([str(i) for i in range(len(outputs))], outputs))
    assert score < 1.0
