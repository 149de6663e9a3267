"""The sampling engine: KV-cache decoding of a policy after left-padded prompts.

``sample(policy, prompt_ids, prompt_mask, *, key, config, num_samples) -> Rollouts``;
``SamplingConfig`` sets length, temperature, top-p / top-k, EOS ids (temperature 0 = greedy) and
the batching: ``engine`` holds the static batch (one prefill per distinct prompt, its n samples
decoded from copies of that KV state), ``continuous`` a recycled pool of decode slots
(``decode_slots > 0``), ``paged`` that pool over a shared pool of KV blocks (``kv_blocks > 0``),
``sampling`` the per-step token choice, ``sampler`` the choice between the engines.
"""

from prime_jax.rollout.config import Rollouts, SamplingConfig, join_prompt_and_response, repeat_prompts
from prime_jax.rollout.continuous import sample_continuous
from prime_jax.rollout.engine import decode_segments, sample_static
from prime_jax.rollout.paged import sample_paged
from prime_jax.rollout.sampler import sample

__all__ = ["Rollouts", "SamplingConfig", "decode_segments", "join_prompt_and_response", "repeat_prompts",
           "sample", "sample_continuous", "sample_paged", "sample_static"]
