"""The sampling engine: KV-cache decoding of a policy after left-padded prompts.

``sample(policy, prompt_ids, prompt_mask, *, key, config) -> Rollouts``; ``SamplingConfig`` sets
length, temperature, top-p / top-k and EOS ids (temperature 0 = greedy). ``engine`` holds the
decode loop, ``sampling`` the per-step token choice.
"""

from prime_jax.rollout.engine import (
    Rollouts,
    SamplingConfig,
    decode_segments,
    join_prompt_and_response,
    repeat_prompts,
    sample,
)

__all__ = ["Rollouts", "SamplingConfig", "decode_segments", "join_prompt_and_response", "repeat_prompts",
           "sample"]
