"""Synthetic reasoning tasks with exact answers and exact per-step labels (pure Python/numpy).

`make_synthetic_rl_prompts(task, ...)` / `make_synthetic_sft_examples(task, ...)` dispatch on the
task name ("arithmetic" or "countdown"); `synthetic_reward(ability, response, ground_truth)` is
the checker for the abilities these tasks emit that do not go through the math verifier.
"""

from prime_jax.data.synthetic.arithmetic import (
    ArithmeticConfig,
    ArithmeticProblem,
    ArithmeticSolution,
    arithmetic_rl_prompts,
    arithmetic_sft_examples,
    label_arithmetic_steps,
    make_arithmetic_problems,
    parse_arithmetic_problem,
    sample_arithmetic_problem,
    solve_arithmetic,
)
from prime_jax.data.synthetic.countdown import (
    CountdownConfig,
    CountdownProblem,
    countdown_reward,
    countdown_rl_prompts,
    countdown_sft_examples,
    is_correct_countdown,
    label_countdown_steps,
    make_countdown_problems,
    parse_countdown_problem,
    reachable,
    render_solution,
    sample_countdown_problem,
    solve_countdown,
)
from prime_jax.data.synthetic.splits import is_eval_problem

TASKS = ("arithmetic", "countdown")
_CONFIGS = {"arithmetic": ArithmeticConfig, "countdown": CountdownConfig}


def default_config(task: str):
    """The default config dataclass of a task."""
    if task not in _CONFIGS:
        raise ValueError(f"unknown synthetic task {task!r}; known: {TASKS}")
    return _CONFIGS[task]()


def make_synthetic_rl_prompts(task: str, seed: int, num: int, split: str = "train", config=None):
    """RL prompts (list[PromptRecord]) of a synthetic task; deterministic in its arguments."""
    config = config or default_config(task)
    fn = arithmetic_rl_prompts if task == "arithmetic" else countdown_rl_prompts
    return fn(seed, num, split, config)


def make_synthetic_sft_examples(task: str, seed: int, num: int, split: str = "train",
                                config=None):
    """SFT examples (list[SFTExample]) with step labels; noise share set by the config."""
    config = config or default_config(task)
    fn = arithmetic_sft_examples if task == "arithmetic" else countdown_sft_examples
    return fn(seed, num, split, config)


__all__ = [name for name in dir() if not name.startswith("_")]
