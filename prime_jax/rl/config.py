"""Settings of one RL step (SPEC 1): what the collection, the process-reward source, the implicit
reward and the advantages are (one config each), the two losses, and how the updates cut the batch."""

from __future__ import annotations

import dataclasses

from prime_jax.advantages import AdvantageConfig
from prime_jax.config_checks import check_choice
from prime_jax.experience.collect import CollectConfig
from prime_jax.pav.rl_rewards import PavRewardConfig
from prime_jax.reward_models.updates import PrmLossConfig
from prime_jax.rewards import ImplicitRewardConfig
from prime_jax.rl.policy_update import PolicyLossConfig

PRM_MODES = ("after", "before", "none")


@dataclasses.dataclass(frozen=True, kw_only=True)
class PrimeConfig:
    """One RL step: ``collect`` a batch, update the PRM per ``prm_mode`` (``prm_loss``) and turn
    its ``reward`` into ``advantage``s, then PPO (``policy_loss``).

    ``advantage.process_coef = 0`` is RLOO with the outcome verifier only: no PRM at all.
    Mini-batch sizes count responses; micro-batches split them for gradient accumulation.
    ``logprob_rows_per_pass`` (None: no limit) caps the rows of one forward pass of the
    gradient-free log-prob computations (the policy's ``old_logp`` and the reference's log-probs
    of each rollout round, the PRM's log-probs of the batch in ``prm_mode`` "before"/"none"): a
    larger batch runs as several equal passes one after the other. It must divide every batch it
    splits - a rollout round's ``prompts_per_round * num_samples`` rows and, in "before"/"none",
    the batch's ``batch_prompts * num_samples`` - and (checked when the pass is compiled) be a
    multiple of the mesh's data x fsdp size, so that each pass is spread over every device.
    ``max_nonfinite_steps`` consecutive steps with skipped (non-finite) updates stop the run.
    With ``reward.num_chunks > 1`` the PRM's mini-batches take an equal whole-group share of every
    normalisation chunk (the reference's shard layout, ``rl.online_prm.prm_row_order``).

    ``prm_init`` (a Hugging Face directory of the policy's architecture, e.g. ``DIR/model`` of an
    offline implicit PRM from ``train_reward``, trained against the same reference) starts the
    online PRM from other weights than the SFT model's.

    ``explicit_prm`` (a directory from ``train_reward`` kind ``explicit_prm``) replaces the online
    implicit PRM as the process-reward source: Math-Shepherd's step-by-step PPO, with the frozen
    explicit PRM's probability ``sigmoid(z)`` at each step end as the reward there (0 elsewhere),
    centred, discounted and whitened by the same ``advantage`` settings. ``step_reward`` turns
    those step scores, read as a Q^pi model's values, into Rewarding Progress's rewards (PAV-RL:
    ``Q^pi + alpha * A^mu`` with a Best-of-K prover, ``pav.rl_rewards``); its default "q" is the
    plain step-by-step reward.

    ``self_prm`` makes the policy its own implicit PRM (SPRO, ``rl.self_prm``): the process rewards
    ``beta log pi_theta / pi_ref`` of the rollout's own log-probs, no PRM weights and no PRM update;
    ``configs/spro.gin`` adds SPRO's masked step advantage.
    """

    collect: CollectConfig = CollectConfig()
    reward: ImplicitRewardConfig = ImplicitRewardConfig()
    advantage: AdvantageConfig = AdvantageConfig()
    prm_mode: str = "after"
    prm_mini_batch: int = 256
    prm_micro_batches: int = 1
    policy_mini_batch: int = 256
    policy_micro_batches: int = 1
    logprob_rows_per_pass: int | None = None
    max_nonfinite_steps: int = 3
    policy_loss: PolicyLossConfig = PolicyLossConfig()
    prm_loss: PrmLossConfig = PrmLossConfig()
    prm_init: str | None = None
    explicit_prm: str | None = None
    step_reward: PavRewardConfig = PavRewardConfig()
    self_prm: bool = False

    def __post_init__(self):
        check_choice("PrimeConfig", "prm_mode", self.prm_mode, PRM_MODES)
        n = self.collect.num_samples
        rows = self.collect.batch_prompts * n
        for name in ("prm_mini_batch", "policy_mini_batch"):
            size = getattr(self, name)
            if size < 1 or rows % size or size % n:
                raise ValueError(f"PrimeConfig.{name}={size} must divide the batch of {rows} responses "
                                 f"and hold whole groups of num_samples={n}")
        for name in ("prm_micro_batches", "policy_micro_batches"):
            micro, size = getattr(self, name), getattr(self, name.replace("micro_batches", "mini_batch"))
            if micro < 1 or size % micro:
                raise ValueError(f"PrimeConfig.{name}={micro} must divide the mini-batch of {size} responses")
        if self.uses_prm and (self.prm_mini_batch // self.prm_micro_batches) % n:
            raise ValueError(f"PrimeConfig.prm_micro_batches={self.prm_micro_batches}: each PRM micro-batch of "
                             f"{self.prm_mini_batch // self.prm_micro_batches} responses must hold whole groups of "
                             f"num_samples={n} (the PRM loss compares the samples of a prompt)")
        chunks = self.reward.num_chunks
        if self.uses_prm and chunks > 1 and (self.prm_mini_batch % chunks or (self.prm_mini_batch // chunks) % n):
            raise ValueError(f"PrimeConfig.prm_mini_batch={self.prm_mini_batch} with ImplicitRewardConfig.num_chunks="
                             f"{chunks}: each chunk's share of a PRM mini-batch must hold whole groups of "
                             f"num_samples={n} (the reference's per-shard mini-batches)")
        if self.logprob_rows_per_pass is not None:
            self._check_rows_per_pass()
        if self.explicit_prm is None and self.step_reward.form != "q":
            raise ValueError(f"PrimeConfig.step_reward.form={self.step_reward.form!r} needs a Q^pi model: set "
                             "PrimeConfig.explicit_prm to an explicit PRM trained on Monte-Carlo step values")
        if self.prm_init is not None and not self.uses_prm:
            raise ValueError(f"PrimeConfig.prm_init={self.prm_init!r}: this run has no online implicit PRM "
                             "(explicit_prm or self_prm is set, or AdvantageConfig.process_coef=0)")
        if self.explicit_prm is not None and not self.advantage.uses_prm:
            raise ValueError(f"PrimeConfig.explicit_prm={self.explicit_prm!r} with AdvantageConfig.process_coef=0: "
                             "the explicit PRM's rewards would be multiplied by zero")
        if self.self_prm and self.explicit_prm is not None:
            raise ValueError(f"PrimeConfig.self_prm=True with explicit_prm={self.explicit_prm!r}: a run has one "
                             "process-reward source")
        if self.self_prm and not self.advantage.uses_prm:
            raise ValueError("PrimeConfig.self_prm=True with AdvantageConfig.process_coef=0: the policy's own "
                             "process rewards would be multiplied by zero")
        if n < 2 and self.advantage.estimator == "rloo":
            raise ValueError(f"CollectConfig.num_samples={n}: leave-one-out baselines need >= 2")

    def _check_rows_per_pass(self) -> None:
        size = self.logprob_rows_per_pass
        if size < 1:
            raise ValueError(f"PrimeConfig.logprob_rows_per_pass={size} must be None or positive")
        passes = {"a rollout round": self.collect.prompts_per_round * self.collect.num_samples}
        if self.uses_prm and self.prm_mode != "after":
            passes["the batch"] = self.collect.batch_prompts * self.collect.num_samples
        for what, rows in passes.items():
            if size < rows and rows % size:
                raise ValueError(f"PrimeConfig.logprob_rows_per_pass={size} does not divide the "
                                 f"{rows} rows of {what} into equal forward passes")

    @property
    def uses_prm(self) -> bool:
        """Whether an online implicit PRM is trained and read (the process source without an
        explicit PRM or the policy as its own PRM)."""
        return self.advantage.uses_prm and self.explicit_prm is None and not self.self_prm

    @property
    def num_samples(self) -> int:
        return self.collect.num_samples
