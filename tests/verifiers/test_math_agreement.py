"""Agreement of the math verifier with other projects' own verifier test cases.

`data/math_agreement.jsonl` holds test cases (response, ground truth, the reference's verdict)
collected from Math-Verify, hendrycks MATH, NeMo-Skills and verl test suites; `source` names the
project, file and test of each row. Answer-pair cases (`is_equiv(a, b)`, `math_equal(a, b)`) have
their answer wrapped in `\\boxed{}` as the response; NeMo-Skills' symmetric cases appear in both
directions. The verifier may never give 1.0 where the reference says wrong; every case it
rejects although the reference accepts carries a `deliberate` reason, and the set of those
disagreements is asserted exactly, so a change in either direction shows up here.
"""

import collections
import json
import pathlib

import pytest

from prime_jax.verifiers import math as math_verifier

DATA = pathlib.Path(__file__).parent / "data" / "math_agreement.jsonl"


@pytest.fixture(scope="module")
def graded():
    rows = [json.loads(line) for line in DATA.read_text().splitlines()]
    scores = [math_verifier.verify_detailed(row["response"], row["truth"], timeout=20.0)
              for row in rows]
    return rows, scores


def test_the_case_set_is_broad():
    rows = [json.loads(line) for line in DATA.read_text().splitlines()]
    projects = collections.Counter(row["source"].split(" ")[0] for row in rows)
    assert len(rows) >= 300
    assert set(projects) == {"huggingface/Math-Verify", "hendrycks/math", "NVIDIA/NeMo-Skills",
                             "volcengine/verl"}
    assert sum(row["expected"] == 0 for row in rows) >= 50


def test_no_false_positive(graded):
    rows, verdicts = graded
    false_positives = [(row["source"], row["response"][-80:], row["truth"][:80], verdict)
                       for row, verdict in zip(rows, verdicts)
                       if verdict.score == 1.0 and row["expected"] == 0]
    assert false_positives == []


def test_every_disagreement_is_deliberate(graded):
    rows, verdicts = graded
    failures = [verdict for verdict in verdicts if verdict.status in ("timeout", "crash", "error")]
    assert failures == []
    disagreements = {index for index, (row, verdict) in enumerate(zip(rows, verdicts))
                     if verdict.score != row["expected"]}
    listed = {index for index, row in enumerate(rows) if "deliberate" in row}
    assert all(rows[index]["expected"] == 1 for index in listed)
    assert sorted(disagreements - listed) == [], [rows[i] for i in disagreements - listed]
    assert sorted(listed - disagreements) == [], [rows[i] for i in listed - disagreements]
