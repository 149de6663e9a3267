"""A frozen step verifier as the process-reward source (step-by-step PPO; PAV-RL with its prover).

The verifier (``PrimeConfig.explicit_prm``: an explicit PRM from ``train_reward``, loaded by
``step_verifiers.load_step_verifier``) scores every step end ``e_h`` of the batch's responses on
the mesh; its probability ``Q^pi(s_h, a_h) = sigmoid(z_{e_h})`` is read as a Q^pi model's value and
``PrimeConfig.step_reward`` turns it into advantages (``pav.rl_rewards``): Math-Shepherd's
step-by-step PPO sums the plain ``Q^pi`` step rewards into returns with the outcome
(``advantages.advantages_from_rewards``); PAV-RL gives each token of step h its own step's
``(R_i - b_i) + alpha A^mu(s_h, a_h)`` with a Best-of-K prover of pi or of a separate prover policy
whose Q model is ``PavRewardConfig.prover_prm`` (``pav_token_advantages``, no suffix sum), then
whitens. Nothing is trained.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import jax
import jax.numpy as jnp

from prime_jax import advantages
from prime_jax.pav.rl_rewards import PER_TOKEN_FORMS, pav_step_rewards, pav_token_advantages
from prime_jax.rl.config import PrimeConfig
from prime_jax.rl.mesh_batch import MeshBatch
from prime_jax.rl.reward_source import SourceOutput, SourceSettings
from prime_jax.step_verifiers import StepVerifier, load_step_verifier
from prime_jax.training.state import TrainState

_pav_step_rewards = jax.jit(pav_step_rewards, static_argnames=("num_samples", "config"))
_pav_token_advantages = jax.jit(pav_token_advantages, static_argnames=("num_samples", "config"))


@jax.jit
def _q_at_step_ends(scores_bl, step_end_bl):
    """``sigmoid(z)`` at the step ends, 0 elsewhere."""
    return jnp.where(step_end_bl, jax.nn.sigmoid(scores_bl.astype(jnp.float32)), 0.0)


def load_q_model(path: str, vocab_size: int, mesh, field: str) -> StepVerifier:
    """The explicit PRM of a ``train_reward`` directory as a Q model, its weights on ``mesh``; its
    vocabulary must cover the policy's ``vocab_size`` ids (an id past its embedding table would
    read NaN). Errors name ``field``."""
    verifier = load_step_verifier(path, kind="explicit_prm", mesh=mesh, field=field)
    if verifier.config.vocab_size < vocab_size:
        raise ValueError(f"{field}={path!r}: its vocabulary has {verifier.config.vocab_size} ids, "
                         f"fewer than the policy's {vocab_size}")
    return verifier


@dataclasses.dataclass(frozen=True)
class FrozenStepVerifier:
    """Step-by-step PPO's / PAV-RL's process-reward source (``SOURCES["step_verifier"]``)."""

    config: PrimeConfig
    q_model: StepVerifier
    prover: StepVerifier | None = None

    trains_weights: ClassVar[bool] = False
    reads_reference: ClassVar[bool] = False

    @classmethod
    def from_settings(cls, settings: SourceSettings, state: TrainState) -> "FrozenStepVerifier":
        """The Q^pi model of ``config.explicit_prm`` and, for PAV-RL with a separate prover, its
        Q model (one step delimiter for both)."""
        config, vocab_size, mesh = settings.config, settings.vocab_size, settings.mesh
        q_model = load_q_model(config.explicit_prm, vocab_size, mesh, "PrimeConfig.explicit_prm")
        prover_path = config.step_reward.prover_prm
        if prover_path is None:
            return cls(config, q_model)
        prover = load_q_model(prover_path, vocab_size, mesh, "PavRewardConfig.prover_prm")
        if prover.delimiter_ids != q_model.delimiter_ids:
            raise ValueError(f"PavRewardConfig.prover_prm={prover_path!r} ends steps with ids {prover.delimiter_ids}, "
                             f"the Q^pi model with {q_model.delimiter_ids}: train both on one step delimiter")
        return cls(config, q_model, prover)

    def advantages(self, state: TrainState, batch: MeshBatch) -> tuple[TrainState, SourceOutput]:
        """Step scores -> step rewards (``config.step_reward``) -> returns -> whitened advantages."""
        sequences = batch.sequences
        scores = self.q_model.score_steps(sequences.tokens_bs, sequences.attention_mask_bs, sequences.response_mask_bl)
        ends_bl = scores.step_end_bl
        q_pi_bl = _q_at_step_ends(scores.scores_bl, ends_bl)
        q_prover_bl = None
        if self.prover is not None:
            prover = self.prover.score_steps(sequences.tokens_bs, sequences.attention_mask_bs,
                                             sequences.response_mask_bl, ends_bl)
            q_prover_bl = _q_at_step_ends(prover.scores_bl, ends_bl)
        config = self.config
        rewards_bl = _pav_step_rewards(q_pi_bl, ends_bl, num_samples=config.num_samples, config=config.step_reward,
                                       q_prover_bl=q_prover_bl)
        if config.step_reward.form in PER_TOKEN_FORMS:
            returns_bl = _pav_token_advantages(q_pi_bl, ends_bl, batch.response_mask_bl, batch.acc_b,
                                               num_samples=config.num_samples, config=config.step_reward,
                                               q_prover_bl=q_prover_bl)
            adv_bl = advantages.masked_whiten(returns_bl, batch.response_mask_bl) if config.advantage.whiten \
                else returns_bl
            return state, SourceOutput(advantages.PrimeAdvantages(advantages=adv_bl, returns=returns_bl,
                                                                  process_rewards=rewards_bl))
        out = advantages.advantages_from_rewards(rewards_bl, batch.response_mask_bl, batch.acc_b,
                                                 num_samples=config.num_samples, advantage=config.advantage,
                                                 positions=ends_bl)
        return state, SourceOutput(out)
