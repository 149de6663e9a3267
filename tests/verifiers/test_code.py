"""Code verifier: extraction, scoring rule, call-based tests, malformed tests."""

import json
import pathlib
import sys

import pytest

from prime_jax.verifiers import code as code_verifier

sys.path.insert(0, str(pathlib.Path(__file__).parent))
import pool_helpers  # noqa: E402

requires_sandbox = pytest.mark.skipif(bool(pool_helpers.sandbox_missing()),
                                      reason=pool_helpers.sandbox_missing())

ECHO_DOUBLE = "```python\nprint(2 * int(input()))\n```"


def make_tests(inputs, outputs, fn_name=None):
    tests = {"inputs": inputs, "outputs": outputs}
    if fn_name:
        tests["fn_name"] = fn_name
    return json.dumps(tests)


@requires_sandbox
def test_correct_stdio_solution_scores_one():
    assert code_verifier.verify(ECHO_DOUBLE, make_tests(["1\n", "5\n"], ["2\n", "10\n"])) == 1.0


@requires_sandbox
def test_partial_solution_scores_fraction():
    tests = make_tests(["1", "2", "3", "4"], ["2", "4", "7", "9"])
    assert code_verifier.verify(ECHO_DOUBLE, tests) == 0.5


@requires_sandbox
def test_fraction_is_over_the_first_ten_tests_and_a_failure_never_scores_one():
    inputs = [str(i) for i in range(12)]
    outputs = [str(2 * i) for i in range(11)] + ["wrong"]  # first 10 pass, the 12th fails
    assert code_verifier.verify(ECHO_DOUBLE, make_tests(inputs, outputs)) == pytest.approx(0.9)
    outputs = [str(2 * i) for i in range(9)] + ["wrong"] * 3
    assert code_verifier.verify(ECHO_DOUBLE, make_tests(inputs, outputs)) == pytest.approx(0.9)
    outputs = ["wrong"] + [str(2 * i) for i in range(1, 12)]  # only a counted test fails
    assert code_verifier.verify(ECHO_DOUBLE, make_tests(inputs, outputs)) == pytest.approx(0.9)


@requires_sandbox
def test_output_comparison_tolerates_trailing_whitespace_and_list_outputs():
    response = "```python\nprint('a  ')\nprint('b')\nprint()\n```"
    assert code_verifier.verify(response, make_tests([""], ["a\nb"])) == 1.0
    assert code_verifier.verify(response, make_tests([""], [["a", "b"]])) == 1.0
    assert code_verifier.verify(response, make_tests([""], ["a b"])) == 1.0  # token fallback
    assert code_verifier.verify(response, make_tests([""], ["b\na"])) == 0.0


@requires_sandbox
def test_reads_stdin_like_competitive_programs():
    response = "```python\nimport sys\ndata = sys.stdin.buffer.read().split()\n" \
               "print(sum(map(int, data)))\nprint(len(open(0).read()))\n```"
    assert code_verifier.verify(response, make_tests(["1 2\n3\n"], ["6\n0"])) == 1.0


@requires_sandbox
def test_call_based_solution_class_and_function():
    method = "```python\nclass Solution:\n    def twoSum(self, nums, target):\n" \
             "        seen = {}\n        for i, x in enumerate(nums):\n" \
             "            if target - x in seen:\n                return (seen[target - x], i)\n" \
             "            seen[x] = i\n```"
    tests = make_tests([[[2, 7, 11, 15], 9], [[3, 2, 4], 6]], [[0, 1], [[1, 2]]], "twoSum")
    assert code_verifier.verify(method, tests) == 1.0
    function = "```py\ndef add(a, b):\n    return a + b\n```"
    assert code_verifier.verify(function, make_tests([[1, 2], [2, 2]], [3, 5], "add")) == 0.5


def test_last_python_block_wins_and_bare_fence_fallback():
    response = "```python\nprint('old')\n```\ntext\n```python\nprint('new')\n```\n```\nx\n```"
    assert code_verifier.extract_code(response) == "print('new')\n"
    assert code_verifier.extract_code("```\nprint(1)\n```") == "print(1)\n"
    assert code_verifier.extract_code("no code") is None


@requires_sandbox
def test_runtime_error_and_timeout_score_zero():
    crash = "```python\nraise ValueError('boom')\n```"
    assert code_verifier.verify_detailed(crash, make_tests([""], [""])).status == "fail"
    loop = "```python\nwhile True: pass\n```"
    verdict = code_verifier.verify_detailed(loop, make_tests(["", ""], ["", ""]), timeout=0.5)
    assert (verdict.score, verdict.status) == (0.0, "timeout")


@pytest.mark.parametrize("bad", [
    "not json", "[]", '{"inputs": [1]}', '{"inputs": [1], "outputs": [1, 2]}',
    '{"inputs": [], "outputs": []}', '{"inputs": "1", "outputs": "2"}',
    '{"inputs": [1], "outputs": [1], "fn_name": 3}',
])
def test_malformed_tests_score_zero_and_are_counted(bad):
    before = code_verifier.STATS.get("code", "malformed")
    verdict = code_verifier.verify_detailed(ECHO_DOUBLE, bad)
    assert (verdict.score, verdict.status) == (0.0, "malformed")
    assert code_verifier.STATS.get("code", "malformed") == before + 1
    assert verdict.reason


def test_missing_code_block_scores_zero():
    assert code_verifier.verify("I don't know", make_tests(["1"], ["2"])) == 0.0


@pytest.mark.parametrize("got, expected, equal", [
    ([0.1000000001, 0.2], [0.1, 0.2], True),      # a returned float within 1e-6 (relative)
    ([0.1001, 0.2], [0.1, 0.2], False),
    (3.0000001, 3, False),                         # integers compare exactly
    (3, 3.0, True),
    (float("nan"), float("nan"), False),           # nan never matches, not even itself
    ({"a": [1.5000000001]}, {"a": [1.5]}, True),
    ({"a": 1}, {"b": 1}, False),
    ([1, 2], [1, 2, 3], False),
    ("1.0000001", "1.0", False),                   # strings are not numbers
])
def test_returned_values_compare_structurally(got, expected, equal):
    assert code_verifier.values_equal(got, expected) is equal
