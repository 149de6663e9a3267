"""Synthetic reasoning tasks with exact answers and exact per-step labels (pure Python/numpy).

`make_synthetic_rl_prompts(task, ...)` / `make_synthetic_sft_examples(task, ...)` dispatch on the
task name ("arithmetic" or "countdown"); `OUTCOME_SCORERS` maps each ability these tasks emit that
does not go through the math verifier to its checker (what ``verifiers.VerifierPool(scorers=...)``
takes);
`exact_step_labels(task, response, ground_truth, problem)` the exact per-step labels of any response.
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
OUTCOME_SCORERS = {"countdown": countdown_reward}  # ability -> scorer(response, ground_truth) -> float
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


def exact_step_labels(task: str, response: str, ground_truth: str, problem: str | None = None) -> list[bool]:
    """Exact "prefix still correct" labels of ``response``, one per step of
    ``data.steps.split_steps(response, "\\n")`` (one per non-blank line).

    Arithmetic reads the problem from ``problem`` (the prompt's user message, e.g. ``17+20*3-15=``;
    its ground truth is only the answer, which must agree); countdown from ``ground_truth``
    (``2,3,5,7:41``, ``;subset`` appended when not every number must be used), ``problem`` unused.
    """
    if task == "arithmetic":
        if problem is None:
            raise ValueError("exact_step_labels(task='arithmetic') needs problem= the prompt text")
        parsed = parse_arithmetic_problem(problem)
        if str(parsed.answer) != ground_truth.strip():
            raise ValueError(f"exact_step_labels: problem {problem!r} has answer {parsed.answer}, "
                             f"but ground_truth={ground_truth!r}")
        return label_arithmetic_steps(response, parsed)
    if task == "countdown":
        return label_countdown_steps(response, ground_truth)
    raise ValueError(f"exact_step_labels task={task!r}: expected one of {TASKS}")


__all__ = [name for name in dir() if not name.startswith("_")]
