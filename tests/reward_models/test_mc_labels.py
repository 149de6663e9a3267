"""Monte-Carlo step labels: known answers on hand-built trees, the batching plan, resume, and one
end-to-end run of the CLI with a tiny random model."""

import json
import zlib

import pytest
from flax import nnx

from prime_jax.data import PromptRecord, load_tokenizer, make_synthetic_rl_prompts
from prime_jax.data.steps import split_steps
from prime_jax.data.synthetic import make_arithmetic_problems, solve_arithmetic
from prime_jax.models import ModelConfig, Transformer, from_pretrained, save_pretrained
from prime_jax import mc_label
from prime_jax.reward_models import mc_labels
from prime_jax.reward_models.mc_labels import MCLabelConfig, PolicyCompleter, label_prompts, step_prefixes
from prime_jax.rollout import SamplingConfig
from prime_jax.verifiers import VerifierPool

KEYS = {"prompt_index", "prompt", "ground_truth", "ability", "response", "steps", "hard", "soft", "completions"}


@pytest.fixture(scope="module")
def pool():
    with VerifierPool(1) as verifier_pool:
        yield verifier_pool


def _record(problem: str, answer: int) -> PromptRecord:
    return PromptRecord(messages=(("user", problem),), ground_truth=str(answer), ability="math")


class TableModel:
    """A deterministic solver and completer: for prompt + "" the listed solutions; for prompt +
    prefix ``correct[(problem, prefix)]`` right endings then wrong ones (the verifier reads
    only the box). Records the (number of prefixes, n) of every call; ``fail_after`` calls raise."""

    def __init__(self, solutions, correct, fail_after=None):
        self.solutions, self.correct, self.fail_after = solutions, correct, fail_after
        self.calls, self.sampled_tokens = [], 0

    def __call__(self, prompts, prefixes, n):
        if self.fail_after is not None and len(self.calls) >= self.fail_after:
            raise KeyboardInterrupt("simulated interruption")
        self.calls.append((len(prefixes), n))
        out = []
        for record, prefix in zip(prompts, prefixes):
            problem = record.messages[0][1]
            if not prefix:
                texts = self.solutions[problem][:n]
            else:
                right = self.correct[(problem, prefix)]
                texts = [f"\\boxed{{{record.ground_truth}}}"] * right + ["\\boxed{0}"] * (n - right)
            self.sampled_tokens += sum(len(t) for t in texts)
            out.append(texts)
        return out


def test_prefixes_are_cut_from_the_response():
    text = "a\n\nb\nc"  # the blank line is no step, but stays in the prefix the completer continues
    assert step_prefixes(text, split_steps(text)) == ["a\n", "a\n\nb\n"]
    assert step_prefixes("abc", ["abc"]) == [] and step_prefixes("", []) == []


def test_config_names_the_bad_field():
    with pytest.raises(ValueError, match="batch_rows=6.*completions=4"):
        MCLabelConfig(samples_per_prompt=2, completions=4, batch_rows=6)
    with pytest.raises(ValueError, match="MCLabelConfig.completions=0"):
        MCLabelConfig(completions=0)


def test_known_labels_and_the_call_plan(pool, tmp_path):
    a, b = _record("17+20*3-15=", 96), _record("17+20*2=", 74)
    right = "17+20=37\n37*3=111\n111-15=96\n\\boxed{96}"
    slip = "17+20=37\n37*3=110\n110-15=95\n\\boxed{95}"
    short = "17+20=37\n37*2=74\n\\boxed{74}"
    model = TableModel(
        solutions={"17+20*3-15=": [right, slip], "17+20*2=": [short, short]},
        correct={("17+20*3-15=", "17+20=37\n"): 3, ("17+20*3-15=", "17+20=37\n37*3=111\n"): 4,
                 ("17+20*3-15=", "17+20=37\n37*3=111\n111-15=96\n"): 4,
                 ("17+20*3-15=", "17+20=37\n37*3=110\n"): 1, ("17+20*3-15=", "17+20=37\n37*3=110\n110-15=95\n"): 0,
                 ("17+20*2=", "17+20=37\n"): 2, ("17+20*2=", "17+20=37\n37*2=74\n"): 4})
    config = MCLabelConfig(samples_per_prompt=2, completions=4, batch_rows=8)
    out = tmp_path / "labels.jsonl"
    summary = label_prompts([a, b], solver=model, completer=model, pool=pool, config=config, out=out, log=print)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [set(r) for r in rows] == [KEYS] * 4
    assert [(r["prompt_index"], r["response"]) for r in rows] == [(0, right), (0, slip), (1, short), (1, short)]
    assert [r["hard"] for r in rows] == [[1, 1, 1, 1], [1, 1, 0, 0], [1, 1, 1], [1, 1, 1]]
    assert [r["soft"] for r in rows] == [[0.75, 1.0, 1.0, 1.0], [0.75, 0.25, 0.0, 0.0],
                                         [0.5, 1.0, 1.0], [0.5, 1.0, 1.0]]
    assert rows[1]["steps"] == ["17+20=37\n", "37*3=110\n", "110-15=95\n", "\\boxed{95}"]
    # one solver call (4 prompts a round, 2 here), then 7 unique (prompt, prefix) pairs of the 10
    # prefixes - "17+20=37\n" is shared within each prompt, not across them - 2 per call
    assert model.calls == [(2, 2), (2, 4), (2, 4), (2, 4), (1, 4)]
    assert {k: summary[k] for k in ("solutions", "steps", "prefixes", "completed_prefixes", "completions",
                                    "solver_calls", "completer_calls")} == {
        "solutions": 4, "steps": 14, "prefixes": 10, "completed_prefixes": 7, "completions": 28,
        "solver_calls": 1, "completer_calls": 4}
    assert summary["sampled_tokens"] == model.sampled_tokens
    assert json.loads(mc_labels.summary_path(out).read_text())["solutions"] == 4


def test_a_completer_with_missing_texts_is_refused(pool, tmp_path):
    model = TableModel(solutions={"17+20*2=": ["\\boxed{74}"]}, correct={})  # 1 text where 2 are asked
    with pytest.raises(ValueError, match=r"the solver returned \[1\] texts for 1 prefixes x n=2"):
        label_prompts([_record("17+20*2=", 74)], solver=model, completer=model, pool=pool,
                      config=MCLabelConfig(samples_per_prompt=2, completions=2, batch_rows=4),
                      out=tmp_path / "labels.jsonl", log=print)


def _resume_setup(fail_after=None):
    """Six arithmetic prompts, two solutions each (one with a slip); the number of right endings
    of a prefix is a fixed hash of it."""
    problems = make_arithmetic_problems(3, 6)
    records = [_record(p.text, p.answer) for p in problems]
    solutions = {p.text: [solve_arithmetic(p).text, solve_arithmetic(p, slip_step=1, slip_delta=2).text]
                 for p in problems}
    correct = {(p.text, prefix): zlib.crc32(prefix.encode()) % 3
               for p, texts in zip(problems, solutions.values()) for t in texts
               for prefix in step_prefixes(t, split_steps(t))}
    return records, TableModel(solutions, correct, fail_after)


def test_resume_after_an_interruption_equals_an_uninterrupted_run(pool, tmp_path):
    config = MCLabelConfig(samples_per_prompt=2, completions=2, batch_rows=4)
    records, model = _resume_setup()
    whole = tmp_path / "whole.jsonl"
    label_prompts(records, solver=model, completer=model, pool=pool, config=config, out=whole, log=print)
    expected = whole.read_text()
    assert len(expected.splitlines()) == 12

    cut, logs = tmp_path / "cut.jsonl", []
    records, failing = _resume_setup(fail_after=len(model.calls) // 2)
    with pytest.raises(KeyboardInterrupt):
        label_prompts(records, solver=failing, completer=failing, pool=pool, config=config, out=cut, log=logs.append)
    partial = cut.read_text().splitlines()
    assert 0 < len(partial) < 12
    records, again = _resume_setup()
    summary = label_prompts(records, solver=again, completer=again, pool=pool, config=config, out=cut,
                            log=logs.append)
    assert cut.read_text() == expected
    assert summary["resumed_prompts"] == len(partial) // 2 and summary["solutions"] == 12 - 2 * (len(partial) // 2)
    assert any("unfinished" in line for line in logs) == (len(partial) % 2 == 1)

    truncated = expected[:-7]  # the last row loses its end and its newline
    cut.write_text(truncated)
    logs.clear()
    records, again = _resume_setup()
    summary = label_prompts(records, solver=again, completer=again, pool=pool, config=config, out=cut,
                            log=logs.append)
    assert cut.read_text() == expected
    assert any("truncated" in line for line in logs) and any("unfinished" in line for line in logs)
    assert summary["resumed_prompts"] == 5 and summary["solutions"] == 2

    records, again = _resume_setup()
    last_summary = mc_labels.summary_path(cut).read_text()
    label_prompts(records, solver=again, completer=again, pool=pool, config=config, out=cut, log=print)
    assert again.calls == [] and cut.read_text() == expected  # nothing left to do
    assert mc_labels.summary_path(cut).read_text() == last_summary


def test_resume_refuses_a_file_of_other_prompts(pool, tmp_path):
    config = MCLabelConfig(samples_per_prompt=2, completions=2, batch_rows=4)
    records, model = _resume_setup()
    out = tmp_path / "labels.jsonl"
    label_prompts(records[:2], solver=model, completer=model, pool=pool, config=config, out=out, log=print)
    with pytest.raises(ValueError, match="different prompt"):
        label_prompts(records[2:], solver=model, completer=model, pool=pool, config=config, out=out, log=print)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    """A random 1-layer model with the char tokenizer, saved in Hugging Face format."""
    tokenizer = load_tokenizer("char")
    config = ModelConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_layers=1,
                         num_heads=2, num_kv_heads=1, head_dim=8, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id)
    path = tmp_path_factory.mktemp("tiny") / "model"
    save_pretrained(Transformer(config, rngs=nnx.Rngs(0)), path, tokenizer=tokenizer)
    return path


@pytest.mark.parametrize("engine", [[], ["--decode-slots", "3", "--kv-blocks", "8"]], ids=["static", "paged"])
def test_cli_with_a_tiny_random_model(tiny_model, tmp_path, engine):
    out = tmp_path / "mc" / "labels.jsonl"
    # the random model rarely writes a newline: ':' as the delimiter gives its samples several steps
    args = ["--model", str(tiny_model), "--task", "arithmetic", "--num-prompts", "2", "--samples-per-prompt", "2",
            "--completions", "2", "--batch-rows", "4", "--max-new-tokens", "12", "--step-delimiter", ":",
            "--out", str(out), *engine]
    assert mc_label.main(args) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    prompts = make_synthetic_rl_prompts("arithmetic", 0, 2)
    assert [r["prompt_index"] for r in rows] == [0, 0, 1, 1]
    for row in rows:
        assert set(row) == KEYS and row["completions"] == 2
        assert row["prompt"] == prompts[row["prompt_index"]].messages[0][1]
        assert row["steps"] == split_steps(row["response"], ":")
        assert len(row["hard"]) == len(row["soft"]) == len(row["steps"])
        assert all(h in (0, 1) for h in row["hard"]) and all(s in (0.0, 0.5, 1.0) for s in row["soft"])
        assert all(h == (s > 0) for h, s in zip(row["hard"], row["soft"]))
    summary = json.loads(mc_labels.summary_path(out).read_text())
    assert summary["solutions"] == 4 and summary["solver_calls"] == 1
    assert summary["prefixes"] == sum(max(len(r["steps"]) - 1, 0) for r in rows)
    assert summary["completions"] == 2 * summary["completed_prefixes"]
    assert summary["completer_calls"] == -(-summary["completed_prefixes"] // 2)
    assert 8 <= summary["solution_tokens"] <= 4 * 12
    assert summary["sampled_tokens"] == summary["solution_tokens"] + summary["completion_tokens"]
    assert summary["seconds"] > 0 and summary["tokens_per_second"] > 0


def test_cli_refuses_a_tokenizer_that_loses_the_delimiter(tiny_model, tmp_path, capsys):
    # the char tokenizer has no "|": it encodes to <unk>, and prefixes would lose their step ends
    args = ["--model", str(tiny_model), "--task", "arithmetic", "--num-prompts", "1", "--step-delimiter", "|",
            "--out", str(tmp_path / "x.jsonl")]
    assert mc_label.main(args) == 2
    assert "does not decode back to it" in capsys.readouterr().err and not (tmp_path / "x.jsonl").exists()


def test_policy_completer_runs_one_fixed_batch_per_call(tiny_model):
    tokenizer = load_tokenizer(tiny_model)
    sampling = SamplingConfig(max_new_tokens=12, temperature=1.0, eos_id=tokenizer.eos_token_id,
                              pad_id=tokenizer.pad_token_id)  # what the CLI test built: the sampler is compiled
    completer = PolicyCompleter(from_pretrained(tiny_model), tokenizer, sampling, batch_rows=4, width=28)
    record = _record("17-11+7+2=", 15)
    texts = completer([record, record], ["17-11=6\n", ""], 2)
    assert [len(group) for group in texts] == [2, 2] and 4 <= completer.sampled_tokens <= 4 * 12
    assert completer([record, record], ["17-11=6\n", ""], 2) == texts  # the key follows the call's content
    assert [len(group) for group in completer([record], ["17-11=6\n"], 2)] == [2]  # padded to 4 rows
    with pytest.raises(ValueError, match="batch_rows=4"):
        completer([record] * 3, ["a", "b", "c"], 2)
    with pytest.raises(ValueError, match="width=28"):
        completer([record], ["1" * 20], 4)
