"""Agreement of the code verifier with other projects' own code-grader test cases.

`data/code_agreement.jsonl` holds test cases (a response, its tests, the reference's verdict)
collected from the test suites of volcengine/verl (prime_code and sandbox_fusion scoring),
rllm-org/rllm (code reward: TACO, Codeforces, code_contests, LiveCodeBench, KodCode),
NVIDIA-NeMo/Gym (comp_coding and code_gen servers), huggingface/open-r1 (local code reward) and
hanseungwook/memory (stdin / function sandbox); `source` names the project, file and test of each
row. Only the cases are copied, never a grader. Where a reference takes raw code (verl,
sandbox_fusion, NeMo-Gym's worker, memory's sandbox) the code is wrapped in a ```python fence as
the response (as the math agreement suite wraps answers in `\\boxed{}`); NeMo-Gym's "no code block"
cases keep their raw text. Tests in another shape are carried over without changing a value:
a list of {input, output} becomes "inputs"/"outputs", LiveCodeBench's functional tests keep
their JSON-line strings with `fn_name`, and assert-style checks become call tests.

`expected` is the reference's verdict: 1.0 pass, 0.0 fail, or the partial score it asserts
(verl's 0.9, PRIME's rule, which ours shares). `timeout` (s per test, default the verifier's) is
set only on rows whose program never finishes, below the reference's limit, to keep this fast.
The verifier may never give 1.0 where the reference fails; every pass the verifier rejects
carries a `deliberate` reason, and the set of those disagreements is asserted exactly, so a
change in either direction shows up here.
"""

import collections
import concurrent.futures
import json
import pathlib
import sys

import pytest

from prime_jax.verifiers import code as code_verifier

sys.path.insert(0, str(pathlib.Path(__file__).parent))
import pool_helpers  # noqa: E402

DATA = pathlib.Path(__file__).parent / "data" / "code_agreement.jsonl"
requires_sandbox = pytest.mark.skipif(bool(pool_helpers.sandbox_missing()),
                                      reason=pool_helpers.sandbox_missing())


def load_rows():
    return [json.loads(line) for line in DATA.read_text().splitlines()]


def grade(row):
    return code_verifier.verify_detailed(row["response"], json.dumps(row["tests"]),
                                         timeout=row.get("timeout", code_verifier.DEFAULT_TIMEOUT))


@pytest.fixture(scope="module")
def graded():
    rows = load_rows()
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as executor:
        verdicts = list(executor.map(grade, rows))
    return rows, verdicts


def test_the_case_set_is_broad():
    rows = load_rows()
    projects = collections.Counter(row["source"].split(" ")[0] for row in rows)
    assert len(rows) >= 40
    assert set(projects) == {"volcengine/verl", "rllm-org/rllm", "NVIDIA-NeMo/Gym",
                             "huggingface/open-r1", "hanseungwook/memory"}
    assert sum(row["expected"] == 1.0 for row in rows) >= 20
    assert sum(row["expected"] < 1.0 for row in rows) >= 15
    assert sum("fn_name" in row["tests"] for row in rows) >= 10
    assert all("deliberate" not in row or row["expected"] == 1.0 for row in rows)


@requires_sandbox
def test_no_false_positive(graded):
    rows, verdicts = graded
    false_positives = [(row["source"], verdict) for row, verdict in zip(rows, verdicts)
                       if verdict.score == 1.0 and row["expected"] < 1.0]
    assert false_positives == []


@requires_sandbox
def test_partial_scores_match_the_reference(graded):
    rows, verdicts = graded
    partial = [(row["source"], row["expected"], verdict.score)
               for row, verdict in zip(rows, verdicts) if 0.0 < row["expected"] < 1.0]
    assert partial and all(expected == pytest.approx(score) for _, expected, score in partial), \
        partial


@requires_sandbox
def test_every_disagreement_is_deliberate(graded):
    rows, verdicts = graded
    failures = [(row["source"], verdict) for row, verdict in zip(rows, verdicts)
                if verdict.status in ("crash", "error", "malformed")
                or (verdict.status == "timeout" and "timeout" not in row)]
    assert failures == []
    disagreements = {index for index, (row, verdict) in enumerate(zip(rows, verdicts))
                     if (verdict.score == 1.0) != (row["expected"] == 1.0)}
    listed = {index for index, row in enumerate(rows) if "deliberate" in row}
    assert sorted(disagreements - listed) == [], \
        [(rows[i]["source"], verdicts[i]) for i in sorted(disagreements - listed)]
    assert sorted(listed - disagreements) == [], \
        [(rows[i]["source"], verdicts[i]) for i in sorted(listed - disagreements)]
