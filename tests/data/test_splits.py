"""Held-out evaluation splits are disjoint by problem and deterministic from the seed."""

import pytest

from prime_jax.data import synthetic
from prime_jax.data.synthetic.splits import is_eval_problem


@pytest.mark.parametrize("task", synthetic.TASKS)
def test_train_and_eval_disjoint_across_seeds(task):
    config = synthetic.default_config(task)
    train = {r.messages[0][1] for s in (0, 1) for r in
             synthetic.make_synthetic_rl_prompts(task, s, 1500, "train")}
    evals = [r.messages[0][1] for r in synthetic.make_synthetic_rl_prompts(task, 0, 200, "eval")]
    assert len(set(evals)) == len(evals) == 200
    assert not train & set(evals)
    assert all(is_eval_problem(t, config.eval_fraction) for t in evals)
    assert not any(is_eval_problem(t, config.eval_fraction) for t in train)
    assert evals == [r.messages[0][1] for r in
                     synthetic.make_synthetic_rl_prompts(task, 0, 200, "eval")]


@pytest.mark.parametrize("task", synthetic.TASKS)
def test_sft_and_rl_share_the_problem_split(task):
    sft = synthetic.make_synthetic_sft_examples(task, 5, 100, "eval")
    rl = synthetic.make_synthetic_rl_prompts(task, 5, 100, "eval")
    assert [e.messages for e in sft] == [r.messages for r in rl]
    assert [e.ground_truth for e in sft] == [r.ground_truth for r in rl]


def test_exhausted_space_raises():
    config = synthetic.ArithmeticConfig(num_ops=1, operand_max=2, multiplier_max=2, ops=("+",))
    with pytest.raises(ValueError, match="too small"):
        synthetic.make_synthetic_rl_prompts("arithmetic", 0, 50, "train", config)


def test_bad_split_name():
    with pytest.raises(ValueError):
        synthetic.make_synthetic_rl_prompts("arithmetic", 0, 5, "test")
