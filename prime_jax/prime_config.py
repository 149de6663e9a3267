"""Settings of the PRIME loop itself (SPEC 1): batch, filter, PRM mode, advantages."""

from __future__ import annotations

import dataclasses

PRM_MODES = ("after", "before", "none")


@dataclasses.dataclass(frozen=True, kw_only=True)
class PrimeConfig:
    """One RL step = ``batch_prompts`` kept prompts x ``num_samples`` responses.

    Rollout rounds of ``rollout_prompts`` prompts (default: ``batch_prompts``
    times ``oversample``) repeat, at most ``max_rollout_rounds`` times, until
    the accuracy filter ``acc_low <= mean acc <= acc_high`` has kept enough
    groups. ``process_coef = 0`` is RLOO with the outcome verifier only: no
    PRM at all. Mini-batch sizes count responses; micro-batches split them for
    gradient accumulation. ``logprob_rows_per_pass`` (None: no limit) caps the
    rows of one forward pass of the gradient-free log-prob computations (the
    policy's ``old_logp`` and the reference's log-probs of each rollout round,
    the PRM's log-probs of the batch in ``prm_mode`` "before"/"none"): a larger
    batch runs as several equal passes one after the other. It must divide every
    batch it splits - a rollout round's ``prompts_per_round * num_samples`` rows
    and, in "before"/"none", the batch's ``batch_prompts * num_samples`` - and
    (checked when the pass is compiled) be a multiple of the mesh's data x fsdp
    size, so that each pass is spread over every device.
    """

    num_samples: int = 4
    batch_prompts: int = 256
    oversample: float = 1.0
    rollout_prompts: int | None = None
    max_rollout_rounds: int = 4
    filter_accuracy: bool = True
    acc_low: float = 0.2
    acc_high: float = 0.8
    drop_truncated: bool = False
    prm_mode: str = "after"
    prm_mini_batch: int = 256
    prm_micro_batches: int = 1
    policy_mini_batch: int = 256
    policy_micro_batches: int = 1
    logprob_rows_per_pass: int | None = None
    granularity: str = "token"
    norm: str = "batch_norm"
    num_chunks: int = 1
    beta: float = 0.05
    process_coef: float = 1.0
    outcome_coef: float = 1.0
    process_gamma: float = 1.0
    outcome_gamma: float = 1.0
    estimator: str = "rloo"
    process_baseline: str = "reference"
    step_delimiter: str = "\n"
    max_nonfinite_steps: int = 3

    def __post_init__(self):
        if self.prm_mode not in PRM_MODES:
            raise ValueError(f"PrimeConfig.prm_mode={self.prm_mode!r}: expected one of {PRM_MODES}")
        rows = self.batch_prompts * self.num_samples
        for name in ("prm_mini_batch", "policy_mini_batch"):
            size = getattr(self, name)
            if rows % size or size % self.num_samples:
                raise ValueError(f"PrimeConfig.{name}={size} must divide the batch of {rows} responses "
                                 f"and hold whole groups of num_samples={self.num_samples}")
        if self.logprob_rows_per_pass is not None:
            self._check_rows_per_pass()
        if self.num_samples < 2 and self.estimator == "rloo":
            raise ValueError("PrimeConfig.num_samples must be >= 2 for leave-one-out baselines")

    def _check_rows_per_pass(self) -> None:
        size = self.logprob_rows_per_pass
        if size < 1:
            raise ValueError(f"PrimeConfig.logprob_rows_per_pass={size} must be None or positive")
        passes = {"a rollout round": self.prompts_per_round * self.num_samples}
        if self.uses_prm and self.prm_mode != "after":
            passes["the batch"] = self.batch_prompts * self.num_samples
        for what, rows in passes.items():
            if size < rows and rows % size:
                raise ValueError(f"PrimeConfig.logprob_rows_per_pass={size} does not divide the "
                                 f"{rows} rows of {what} into equal forward passes")

    @property
    def uses_prm(self) -> bool:
        return self.process_coef != 0

    @property
    def prompts_per_round(self) -> int:
        return self.rollout_prompts or max(1, round(self.batch_prompts * self.oversample))
