"""The policy as its own implicit PRM (SPRO, arXiv 2507.01551): a process-reward source without a PRM.

SPRO reads the implicit process reward off the policy that sampled the batch:

    r[i,t] = beta * (log pi_theta_old(y_t | y_<t) - log pi_ref(y_t | y_<t))

with ``log pi_theta_old`` the rollout's own log-probs (``MeshBatch.old_logp_bl``, already computed
for PPO's ratio) and the frozen reference's log-probs; no second model, no PRM update, no extra
forward pass. The rewards go through the same fused kernel as PRIME's
(``reward_source.implicit_advantages``), so ``AdvantageConfig.credit`` picks the credit: SPRO's
masked step advantage (``credit = "msa"`` with the GRPO outcome and no whitening,
``configs/spro.gin``) or PRIME's summed returns (``credit = "sum"``: PRIME's advantage on the
policy's own rewards, the "does PRIME need a separate PRM?" ablation).

At step 1 the policy is the reference and every reward is exactly 0: ``old_logp`` and ``ref_logp``
come from one log-prob program with equal weights.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from prime_jax.rl.config import PrimeConfig
from prime_jax.rl.mesh_batch import MeshBatch
from prime_jax.rl.reward_source import SourceOutput, SourceSettings, implicit_advantages
from prime_jax.training.state import TrainState


@dataclasses.dataclass(frozen=True)
class SelfImplicitPrm:
    """SPRO's process-reward source (``rl.step.SOURCES["self_prm"]``): nothing of its own to train."""

    config: PrimeConfig
    delimiter_ids: tuple[int, ...]
    mesh: object

    trains_weights: ClassVar[bool] = False
    reads_reference: ClassVar[bool] = True

    @classmethod
    def from_settings(cls, settings: SourceSettings, state: TrainState) -> "SelfImplicitPrm":
        return cls(settings.config, settings.delimiter_ids, settings.mesh)

    def advantages(self, state: TrainState, batch: MeshBatch) -> tuple[TrainState, SourceOutput]:
        """The fused kernel on the policy's own log-probs; the state is unchanged."""
        out = implicit_advantages(batch, batch.old_logp_bl, self.config, self.delimiter_ids, self.mesh)
        return state, SourceOutput(out, (), batch.old_logp_bl)
