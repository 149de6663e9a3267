"""Implicit PRM (a PRIME run's online PRM, or an offline one from ``train_reward``) as a step verifier."""

from __future__ import annotations

import jax.numpy as jnp
from flax import nnx

from prime_jax.config_checks import check_choice
from prime_jax.models import token_logprobs
from prime_jax.rewards import ImplicitRewardConfig, log_ratio, segment_sums_at_ends
from prime_jax.step_verifiers.base import StepScores, StepVerifier, response_step_ends

READINGS = ("step", "cumulative")


class ImplicitPRMVerifier(StepVerifier):
    """Step score from the PRM ``pi_phi`` and its reference ``pi_ref``, with the token log-ratio
    ``q_t = log pi_phi(y_t | y_<t) - log pi_ref(y_t | y_<t)`` and the run's beta:

        reading "step":        score_s = beta * sum_{t in step s} q_t       (PRIME's step reward)
        reading "cumulative":  score_s = beta * sum_{t <= e_s} q_t          (implicit Q of the prefix)

    ``sigmoid(score)`` is the PRM's training-objective probability; it has no calibrated 0.5
    (``threshold`` None: choose one on data). ``prompt_score_b`` is 0 (no response token yet).
    Beta and the step delimiter come from the run's record (``reward``)."""

    kind = "implicit_prm"
    logit_scores = True

    def __init__(self, prm, reference, *, reward: ImplicitRewardConfig, name: str, tokenizer,
                 delimiter_ids: tuple[int, ...], step_delimiter: str | None = None, reading: str = "step"):
        check_choice("ImplicitPRMVerifier", "reading", reading, READINGS)
        self.prm_graphdef, self.prm_params = nnx.split(prm)
        self.reference_graphdef, self.reference_params = nnx.split(reference)
        self.config = prm.config
        self.reward, self.reading = reward, reading
        super().__init__(name=name, tokenizer=tokenizer, step_delimiter=step_delimiter or reward.step_delimiter,
                         delimiter_ids=delimiter_ids, threshold=None)

    def with_reading(self, reading: str) -> "ImplicitPRMVerifier":
        """The same PRM and reference (shared weights) read per ``reading``."""
        return ImplicitPRMVerifier(nnx.merge(self.prm_graphdef, self.prm_params),
                                   nnx.merge(self.reference_graphdef, self.reference_params), reward=self.reward,
                                   name=self.name, tokenizer=self.tokenizer, delimiter_ids=self.delimiter_ids,
                                   step_delimiter=self.step_delimiter, reading=reading)

    def weights(self):
        return self.prm_params, self.reference_params

    def token_log_ratios(self, weights, tokens_bs, attention_mask_bs, response_mask_bl):
        """``q_bl`` float32 (B, L) on the response (0 off ``response_mask_bl``)."""
        prm_params, reference_params = weights
        length = response_mask_bl.shape[1]
        logp_prm_bl = token_logprobs(nnx.merge(self.prm_graphdef, prm_params), tokens_bs, attention_mask_bs,
                                     last=length)
        logp_ref_bl = token_logprobs(nnx.merge(self.reference_graphdef, reference_params), tokens_bs,
                                     attention_mask_bs, last=length)
        return log_ratio(logp_prm_bl, logp_ref_bl, response_mask_bl).astype(jnp.float32)

    def _score(self, weights, tokens_bs, attention_mask_bs, response_mask_bl, step_end_bl) -> StepScores:
        q_bl = self.token_log_ratios(weights, tokens_bs, attention_mask_bs, response_mask_bl)
        ends_bl = response_step_ends(tokens_bs, response_mask_bl, self.delimiter_ids, step_end_bl)
        if self.reading == "step":
            sums_bl = segment_sums_at_ends(q_bl, ends_bl)
        else:
            sums_bl = jnp.where(ends_bl, jnp.cumsum(q_bl, axis=1), 0.0)
        return StepScores(scores_bl=self.reward.beta * sums_bl, step_end_bl=ends_bl,
                          prompt_score_b=jnp.zeros(q_bl.shape[0], jnp.float32))
