"""The sampling engine: KV-cache decoding of a policy after left-padded prompts.

``sample(policy, prompt_ids, prompt_mask, *, key, config) -> Rollouts``; ``SamplingConfig`` sets
length, temperature, top-p / top-k and EOS ids (temperature 0 = greedy). ``engine`` holds the
decode loop, ``sampling`` the per-step token choice, ``shared_prefix`` the n samples of a prompt
from one prefill (``sample_shared``), ``continuous`` a recycled pool of decode slots
(``sample_continuous``).
"""

from prime_jax.rollout.continuous import sample_continuous
from prime_jax.rollout.engine import (
    Rollouts,
    SamplingConfig,
    decode_segments,
    join_prompt_and_response,
    repeat_prompts,
    sample,
)
from prime_jax.rollout.shared_prefix import sample_shared

__all__ = ["Rollouts", "SamplingConfig", "decode_segments", "join_prompt_and_response", "repeat_prompts",
           "sample", "sample_continuous", "sample_shared"]
