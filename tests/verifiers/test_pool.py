"""VerifierPool: order, mixed abilities, per-row failure isolation, async overlap."""

import json
import pathlib
import sys
import time

import pytest

from prime_jax.verifiers import VerifierPool

sys.path.insert(0, str(pathlib.Path(__file__).parent))
import pool_helpers  # noqa: E402  (spawned workers import it by name via the inherited sys.path)

requires_sandbox = pytest.mark.skipif(bool(pool_helpers.sandbox_missing()),
                                      reason=pool_helpers.sandbox_missing())
CODE_TESTS = json.dumps({"inputs": ["1", "2"], "outputs": ["2", "4"]})
GOOD_CODE = "```python\nprint(2 * int(input()))\n```"
HALF_CODE = "```python\nn = int(input())\nprint(2 if n == 1 else 0)\n```"


@pytest.fixture(scope="module")
def pool():
    with VerifierPool(num_workers=2, math_timeout=5.0, code_timeout=2.0) as verifier_pool:
        yield verifier_pool


def test_batch_order_preserved(pool):
    rows = [(f"\\boxed{{{i}}}", str(i if i % 3 else i + 1), "math") for i in range(12)]
    expected = [0.0 if i % 3 == 0 else 1.0 for i in range(12)]
    assert pool.score(rows) == expected


@requires_sandbox
def test_mixed_abilities_and_row_formats(pool):
    rows = [
        ("so \\boxed{\\frac{1}{2}}", "0.5", "math"),
        {"response": GOOD_CODE, "ground_truth": CODE_TESTS, "ability": "code"},
        ("\\boxed{\\sqrt{8}}", "2\\sqrt{2}", "math"),
        (HALF_CODE, CODE_TESTS, "code"),
        ("\\boxed{3}", "4", "math"),
        (GOOD_CODE, "{malformed", "code"),
        ("anything", "x", "poetry"),
    ]
    assert pool.score(rows) == [1.0, 1.0, 1.0, 0.5, 0.0, 0.0, 0.0]
    counts = pool.stats.counts()
    assert counts["code"]["malformed"] >= 1
    assert counts["poetry"]["unknown"] == 1


@requires_sandbox
def test_future_overlaps_with_caller_work(pool):
    slow = "```python\nimport time\ntime.sleep(0.5)\nprint(2 * int(input()))\n```"
    start = time.monotonic()
    future = pool.submit([(slow, CODE_TESTS, "code"), ("\\boxed{2}", "2", "math")])
    submitted = time.monotonic() - start
    assert not future.done() and submitted < 0.2
    busy_until = time.monotonic() + 0.3  # "accelerator work" while the pool verifies
    while time.monotonic() < busy_until:
        pass
    assert future.result(timeout=30) == [1.0, 1.0]
    assert pool.score_async([]).result() == []


def test_crashing_row_scores_zero_and_the_rest_still_score():
    rows = [("a", "a", "custom"), ("CRASH", "a", "custom"), ("b", "b", "custom"),
            ("\\boxed{7}", "7", "math"), ("CRASH", "a", "custom"), ("c", "d", "custom")]
    with VerifierPool(num_workers=2, scorers={"custom": pool_helpers.crash_or_match}) as pool:
        assert pool.score(rows) == [1.0, 0.0, 1.0, 1.0, 0.0, 0.0]
        assert pool.stats.get("custom", "crash") == 2
        assert pool.score([("z", "z", "custom")]) == [1.0]  # workers were replaced


def test_hanging_row_is_killed_at_row_timeout():
    rows = [("HANG", "x", "custom"), ("y", "y", "custom")]
    with VerifierPool(num_workers=1, row_timeout=1.0,
                      scorers={"custom": pool_helpers.hang_or_match}) as pool:
        start = time.monotonic()
        assert pool.score(rows) == [0.0, 1.0]
        assert time.monotonic() - start < 15
        assert pool.stats.get("custom", "timeout") == 1


def test_fork_start_method_is_refused():
    with pytest.raises(ValueError):
        VerifierPool(start_method="fork")
