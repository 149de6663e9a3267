"""ProcessBench: the metric on hand-computed cases, the threshold search, record parsing, the
shipped synthetic sets and the CLI end to end on a tiny random model (implicit PRM, ORM and
explicit PRM)."""

import collections
import json
import pathlib

import numpy as np
import pytest

from prime_jax import processbench as cli
from prime_jax.data import load_tokenizer
from prime_jax.data.synthetic import (label_arithmetic_steps, label_countdown_steps, make_arithmetic_problems,
                                      parse_arithmetic_problem, parse_countdown_problem, solve_arithmetic)
from prime_jax.eval.processbench import (ProcessBenchRecord, choose_threshold, encode_record, first_flagged,
                                         kind_metrics, length_metrics, load_processbench, score_records, split_metrics)
from prime_jax.rewards import step_ends_from_tokens
from prime_jax.step_verifiers import load_step_verifier
from verifier_dirs import save_base, write_explicit_prm, write_orm, write_prime_run

ASSETS = pathlib.Path(cli.__file__).parent / "assets" / "processbench"


def test_first_flagged_is_the_first_step_strictly_below_the_threshold():
    assert first_flagged([0.9, 0.4, 0.2], 0.5) == 1
    assert first_flagged([0.9, 0.5, 0.7], 0.5) == -1  # 0.5 is not below 0.5
    assert first_flagged([0.1], 0.5) == 0


def test_metric_on_a_mixed_split():
    # erroneous rows: 2 -> 2 right, 0 -> 0 right, 1 -> missed; correct rows: one right, one flagged
    m = split_metrics([-1, -1, 2, 0, 1], [-1, 1, 2, 0, -1])
    assert (m["n"], m["n_erroneous"], m["n_correct"]) == (5, 3, 2)
    assert m["acc_erroneous"] == pytest.approx(2 / 3) and m["acc_correct"] == pytest.approx(1 / 2)
    assert m["f1"] == pytest.approx(2 * (2 / 3) * (1 / 2) / (2 / 3 + 1 / 2))  # = 4/7
    assert (m["erroneous_flagged_early"], m["erroneous_flagged_late"], m["erroneous_missed"]) == (0, 0, 1)


def test_metric_one_step_early_or_late_is_wrong():
    m = split_metrics([2, 2, 2, -1], [1, 3, 2, -1])
    assert m["acc_erroneous"] == pytest.approx(1 / 3) and m["acc_correct"] == 1.0
    assert m["f1"] == pytest.approx(2 * (1 / 3) / (1 / 3 + 1))  # = 1/2
    assert (m["erroneous_flagged_early"], m["erroneous_flagged_late"], m["erroneous_missed"]) == (1, 1, 0)


def test_metric_on_one_sided_splits():
    all_correct = split_metrics([-1, -1, -1, -1], [-1, 0, -1, 3])
    assert all_correct["acc_correct"] == 0.5 and all_correct["acc_erroneous"] is None and all_correct["f1"] is None
    all_erroneous = split_metrics([0, 1, 3], [0, 0, -1])
    assert all_erroneous["acc_erroneous"] == pytest.approx(1 / 3) and all_erroneous["acc_correct"] is None
    assert all_erroneous["f1"] is None
    assert split_metrics([0, -1], [-1, 0])["f1"] == 0.0  # both accuracies 0


def test_kind_metrics_per_error_kind_against_the_correct_rows():
    def record(label, kind):
        return ProcessBenchRecord(id="r", problem="p", steps=("a", "b", "c", "d"), label=label, kind=kind)

    records = [record(-1, "correct"), record(-1, "correct"), record(2, "slip"), record(1, "slip"),
               record(3, "box"), record(3, "box"), record(0, None)]
    # correct: 1 of 2 unflagged; slip: 2 -> 2 right, 1 -> 0 early; box: 3 -> -1 missed, 3 -> 3 right
    metrics = kind_metrics(records, [-1, 0, 2, 0, -1, 3, 0])
    assert set(metrics) == {"slip", "box"}  # the unnamed erroneous row joins no kind
    assert metrics["slip"] == {"n": 2, "acc": 0.5, "f1": 0.5, "flagged_early": 1, "flagged_late": 0, "missed": 0}
    assert metrics["box"] == {"n": 2, "acc": 0.5, "f1": 0.5, "flagged_early": 0, "flagged_late": 0, "missed": 1}
    assert kind_metrics([record(-1, None), record(1, None)], [-1, 1]) is None


def test_length_metrics_group_rows_by_their_number_of_steps():
    records = [ProcessBenchRecord(id="r", problem="p", steps=("a",) * n, label=label)
               for n, label in ((2, -1), (2, 1), (3, -1), (3, 0), (3, 2))]
    metrics = length_metrics(records, [-1, 0, 1, 0, 2])
    assert sorted(metrics) == [2, 3]
    assert (metrics[2]["acc_erroneous"], metrics[2]["acc_correct"]) == (0.0, 1.0)
    assert (metrics[3]["n_erroneous"], metrics[3]["acc_erroneous"], metrics[3]["acc_correct"]) == (2, 1.0, 0.0)


def test_choose_threshold_by_hand():
    scores = [[0.8, 0.7], [0.6, 0.9], [0.9, 0.3], [0.5, 0.9]]  # correct, correct, error at 1, error at 0
    labels = [-1, -1, 1, 0]
    # right for tau in: (-inf, .7], (-inf, .6], (.3, .9], (.5, inf): all four in (.5, .6], midpoint .55
    assert choose_threshold(scores, labels) == pytest.approx(0.55)
    with pytest.raises(ValueError, match="both erroneous"):
        choose_threshold(scores[:2], labels[:2])


def test_choose_threshold_matches_a_brute_force_search():
    rng = np.random.default_rng(0)
    labels = [int(x) for x in rng.integers(-1, 4, size=60)]
    scores = [rng.random(5) for _ in labels]

    def f1(tau):
        return split_metrics(labels, [first_flagged(s, tau) for s in scores])["f1"]

    grid = np.concatenate([np.unique(np.concatenate(scores)), [1.0 + 1e-9]])
    assert f1(choose_threshold(scores, labels)) == pytest.approx(max(f1(t) for t in grid))


def test_records_parse_and_malformed_rows_are_listed_by_reason(tmp_path):
    good = {"id": "gsm8k-0", "generator": "Qwen2-7B-Instruct", "problem": "1+1?", "steps": ["1+1=2", "\\boxed{2}"],
            "final_answer_correct": True, "label": -1}
    rows = [json.dumps(good), "{not json", json.dumps([1, 2]), json.dumps({**good, "label": 2}),
            json.dumps({**good, "steps": []}), json.dumps({**good, "steps": "1+1=2"}),
            json.dumps({k: v for k, v in good.items() if k != "problem"}), json.dumps({**good, "label": True}),
            json.dumps({**good, "final_answer_correct": "yes"}), "", json.dumps({**good, "steps": ["1+1=2", " "]}),
            json.dumps({"id": 7, "problem": "p", "steps": ["a", "b", "c"], "label": 1, "error_kind": "copy"}),
            json.dumps({**good, "kind": 3})]
    path = tmp_path / "mixed.jsonl"
    path.write_text("\n".join(rows) + "\n")
    records, skipped = load_processbench(path)
    assert records == [
        ProcessBenchRecord(id="gsm8k-0", problem="1+1?", steps=("1+1=2", "\\boxed{2}"), label=-1,
                           final_answer_correct=True, generator="Qwen2-7B-Instruct"),
        ProcessBenchRecord(id="7", problem="p", steps=("a", "b", "c"), label=1, kind="copy")]
    assert skipped == {"invalid json": [f"{path}:2"], "not an object": [f"{path}:3"],
                       "'label' is not -1 or a step index": [f"{path}:4"],
                       "'steps' is not a non-empty list of strings": [f"{path}:5", f"{path}:6"],
                       "no 'problem'": [f"{path}:7"], "'label' is not an integer": [f"{path}:8"],
                       "'final_answer_correct' is not a boolean": [f"{path}:9"],
                       "'steps' holds a blank step": [f"{path}:11"],
                       "'kind' is not a non-empty string": [f"{path}:13"]}
    with pytest.raises(ValueError, match="label=3"):
        ProcessBenchRecord(id="x", problem="p", steps=("a",), label=3)


@pytest.mark.parametrize("task", ["arithmetic", "countdown"])
def test_shipped_sets_are_balanced_and_exactly_labelled(task):
    records, skipped = load_processbench(ASSETS / f"{task}.jsonl")
    assert not skipped and 50 <= len(records) <= 400
    labels = np.array([r.label for r in records])
    assert (labels == -1).sum() == (labels >= 0).sum()
    assert len({r.problem for r in records if r.label == -1}) == (labels == -1).sum()  # distinct problems
    label_steps, parse = {"arithmetic": (label_arithmetic_steps, parse_arithmetic_problem),
                          "countdown": (label_countdown_steps, parse_countdown_problem)}[task]
    for r in records[::7]:
        exact = label_steps("\n".join(r.steps), parse(r.problem))
        assert r.label == next((i for i, ok in enumerate(exact) if not ok), -1)
        assert r.generator and (r.final_answer_correct or r.label >= 0)


KIND_SETS = ["arithmetic_dev_kinds", "arithmetic_heldout_kinds", "arithmetic_heldout2_kinds",
             "arithmetic_heldout3_kinds"]


@pytest.mark.parametrize("name", KIND_SETS)
def test_shipped_error_kind_sets_are_exactly_labelled_and_disjoint(name):
    records, skipped = load_processbench(ASSETS / f"{name}.jsonl")
    assert not skipped and len(records) == 550
    kinds = collections.Counter(r.kind for r in records)
    assert kinds.pop("correct") == 200 and len(kinds) == 7 and set(kinds.values()) == {50}
    for r in records:
        exact = label_arithmetic_steps("\n".join(r.steps), parse_arithmetic_problem(r.problem))
        assert r.label == next((i for i, ok in enumerate(exact) if not ok), -1)
        assert (r.label == -1) == (r.kind == "correct")
    assert {len(r.steps) - 1 for r in records} >= {2, 3, 4, 5, 6, 7}
    for other in set(KIND_SETS) - {name}:
        assert not {r.problem for r in records} & {r.problem for r in load_processbench(ASSETS / f"{other}.jsonl")[0]}


def test_step_ends_are_the_ones_a_sampled_response_would_have():
    tokenizer = load_tokenizer("char")
    record = ProcessBenchRecord(id="0", problem="1+2*3=", steps=("1+2=3", "3*3=9", "\\boxed{9}"), label=-1)
    row = encode_record(tokenizer, record, "\n")
    assert tokenizer.decode(row.response_ids) == "1+2=3\n3*3=9\n\\boxed{9}</s>"
    ids_bl, mask_bl = np.array([row.response_ids]), np.ones((1, len(row.response_ids)), np.int32)
    ends_bl = np.asarray(step_ends_from_tokens(ids_bl, mask_bl, tokenizer.encode("\n", add_special_tokens=False)))
    assert np.flatnonzero(ends_bl[0]).tolist() == row.step_ends == [5, 11, len(row.response_ids) - 1]


# --- the CLI end to end on a tiny random model ------------------------------------------------------


def _write_split(path, seed):
    """Six held-out arithmetic solutions, three with a propagated slip at steps 0 / 1 / 2 (exact
    labels), the slips named by kind "slip_at_<step>"."""
    rows = []
    for i, problem in enumerate(make_arithmetic_problems(seed, 6, "eval")):
        solution = solve_arithmetic(problem, slip_step=i % 3 if i % 2 else None, slip_delta=1 if i % 2 else 0)
        rows.append({"id": f"{path.stem}-{i}", "problem": problem.text, "steps": list(solution.lines),
                     "label": solution.first_error, "final_answer_correct": solution.first_error == -1,
                     "kind": f"slip_at_{solution.first_error}" if solution.first_error >= 0 else "correct"})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """Two splits, a tiny HF model, a PRIME run whose PRM is it plus noise, and an ORM and an
    explicit PRM (a train_reward-style directory) on it with random heads."""
    root = tmp_path_factory.mktemp("processbench")
    tokenizer = load_tokenizer("char")
    model = save_base(root / "hf", tokenizer)
    run = write_prime_run(root / "run", root / "hf", model, beta=0.1)
    write_orm(root / "orm", model, tokenizer, record=False)
    explicit = write_explicit_prm(root / "explicit", model, tokenizer)
    data = [_write_split(root / "dev.jsonl", 0), _write_split(root / "test.jsonl", 1)]
    return {"root": root, "run": run, "orm": root / "orm", "hf": root / "hf", "data": data,
            "explicit": root / "explicit", "explicit_model": explicit}


def _data_args(setup):
    return [arg for path in setup["data"] for arg in ("--data", str(path))]


def test_help_explains_the_flags_and_the_metric(capsys):
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    text = capsys.readouterr().out
    for needle in ("--data", "--explicit-prm", "--prm-workdir", "--prm-step", "--reference", "--orm",
                   "--threshold-split", "--batch-size", "--out", "F1", "harmonic mean", "0.5"):
        assert needle in text


def test_cli_implicit_prm_chooses_the_threshold_on_the_named_split_and_marks_it(setup, capsys):
    out = setup["root"] / "out_prm"
    assert cli.main([*_data_args(setup), "--prm-workdir", str(setup["run"]), "--threshold-split", "dev",
                     "--batch-size", "8", "--out", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["verifier"]["kind"] == "implicit_prm" and "beta 0.1" in results["verifier"]["name"]
    assert results["threshold"]["chosen_on"] == "dev" and "dev" in results["threshold"]["rule"]
    dev, test = results["splits"]["dev"], results["splits"]["test"]
    assert (dev["n_erroneous"], dev["n_correct"], test["n"]) == (3, 3, 6)
    assert dev["threshold_chosen_here"] and dev["in_sample"] and not test["in_sample"]
    assert dev["threshold"] == test["threshold"] == results["threshold"]["value"]
    assert 0.0 <= dev["f1"] <= 1.0 and 0.0 <= test["f1"] <= 1.0
    assert results["mean_f1"] == test["f1"]  # the in-sample split is left out of the mean
    assert set(test["kinds"]) == {"slip_at_0", "slip_at_1", "slip_at_2"}
    assert all(k["n"] == 1 and k["acc"] in (0.0, 1.0) for k in test["kinds"].values())
    table = (out / "results.md").read_text()
    assert "| dev | 3 | 3 |" in table and "(chosen here)" in table and "(in-sample)" in table
    assert "Split test, per error kind" in table and "| slip_at_1 | 1 |" in table
    assert sum(m["n"] for m in test["lengths"].values()) == 6
    assert "| test |" in capsys.readouterr().out


def test_cli_orm_read_at_every_step_end(setup):
    out = setup["root"] / "out_orm"
    assert cli.main([*_data_args(setup), "--orm", str(setup["orm"]), "--batch-size", "8", "--out", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["verifier"]["kind"] == "orm" and results["threshold"]["value"] == 0.5
    assert results["threshold"]["chosen_on"] is None
    assert all(m["acc_erroneous"] is not None and m["acc_correct"] is not None for m in results["splits"].values())
    assert out.joinpath("results.md").exists()


def test_cli_explicit_prm_at_threshold_one_half(setup):
    out = setup["root"] / "out_explicit"
    assert cli.main([*_data_args(setup), "--explicit-prm", str(setup["explicit"]), "--batch-size", "8",
                     "--out", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["verifier"]["kind"] == "explicit_prm" and results["verifier"]["step_delimiter"] == "\n"
    assert results["threshold"] == {"value": 0.5, "chosen_on": None, "rule": "fixed 0.5"}
    assert {m["n"] for m in results["splits"].values()} == {6}


def test_batched_step_scores_equal_one_unpadded_row_at_a_time(setup):
    """Left padding, length buckets and batching do not move a score: the explicit PRM's sigmoid
    logit at each step end of the prompt + response alone (right padding cannot reach back)."""
    verifier = load_step_verifier(setup["explicit"])
    records, _ = load_processbench(setup["data"][0])
    batched = score_records(verifier, records, batch_size=4)
    for record, scores_k in zip(records, batched):
        row = encode_record(verifier.tokenizer, record, "\n")
        sequence = row.prompt_ids + row.response_ids
        ids, mask = np.zeros((1, 128), np.int32), np.zeros((1, 128), np.int32)
        ids[0, :len(sequence)], mask[0, :len(sequence)] = sequence, 1
        logits_s = np.asarray(setup["explicit_model"](ids, mask))[0]
        expected_k = 1 / (1 + np.exp(-logits_s[len(row.prompt_ids) + np.array(row.step_ends)]))
        assert len(scores_k) == len(record.steps)
        np.testing.assert_allclose(scores_k, expected_k, rtol=1e-4, atol=1e-5)


def test_cli_reports_malformed_rows_with_file_and_line(setup, tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(setup["data"][0].read_text() + "{oops\n")
    assert cli.main(["--data", str(bad), "--orm", str(setup["orm"]), "--threshold-split", "bad", "--batch-size", "8",
                     "--out", str(tmp_path / "o")]) == 0
    results = json.loads((tmp_path / "o" / "results.json").read_text())
    assert results["skipped_malformed"] == {"bad": {"invalid json": 1}}
    assert results["threshold"]["chosen_on"] == "bad"
    assert f"{bad}:7" in capsys.readouterr().err


@pytest.mark.parametrize("args, message", [
    (["--data", "missing.jsonl", "--orm", "{orm}"], "not found"),
    (["--data", "{dev}", "--orm", "{hf}"], "ForSequenceClassification"),
    (["--data", "{dev}", "--orm", "{run}"], "holds a verifier of kind 'implicit_prm'"),
    (["--data", "{dev}", "--explicit-prm", "{orm}"], "expected kind 'explicit_prm'"),
    (["--data", "{dev}", "--orm", "{explicit}"], "expected kind 'orm'"),
    (["--data", "{dev}", "--prm-workdir", "{hf}", "--threshold-split", "dev"], "run.json"),
    (["--data", "{dev}", "--orm", "{root}/nowhere"], "not a directory"),
    (["--data", "{dev}", "--orm", "{orm}", "--threshold-split", "gsm8k"], "threshold split 'gsm8k'"),
    (["--data", "{dev}", "--orm", "{orm}", "--prm-step", "3"], "go with --prm-workdir"),
    (["--data", "{dev}", "--prm-workdir", "{run}"], "pass --threshold-split"),
])
def test_cli_errors_exit_2_with_a_message(setup, capsys, args, message):
    names = {"orm": setup["orm"], "run": setup["run"], "hf": setup["hf"], "root": setup["root"],
             "dev": setup["data"][0], "explicit": setup["explicit"]}
    argv = [a.format(**names) for a in args] + ["--out", str(setup["root"] / "err")]
    assert cli.main(argv) == 2
    assert message in capsys.readouterr().err
