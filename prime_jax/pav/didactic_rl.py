"""Policy gradient on the didactic task: outcome reward vs the PAV effective reward.

A tiny transformer policy over the task's 15 tokens reads ``BOS`` (the EOS token, as many
language models do, so the policy can never emit a token outside the task) and emits ``didactic.LENGTH`` tokens. It is first fit by
SFT to samples of the prover ``mu_{sft_gamma}``, then trained with REINFORCE, one Adam step per
on-policy batch of B responses, loss

    L = -(1 / B) sum_b sum_l m_bl w_bl log pi(a_bl | a_b<l)

(SFT is the same step with ``w = 1`` on the data). The per-token weight w is

    outcome:    w_bl = Qhat^pi(s_bl, a_bl) - b_b
    effective:  w_bl = Qhat^pi(s_bl, a_bl) - b_b + alpha * A^{mu_gamma}(s_bl, a_bl)

with ``b_b = (sum_{j != b} r_j) / (B - 1)`` the leave-one-out mean outcome of the other rows of
the batch, ``A^mu`` exact (``didactic.prover_step_q`` + ``provers.process_advantages``) and
``Qhat^pi`` the mean outcome of the row itself and of ``q_rollouts`` extra policy rollouts from
each prefix (``mc_q.mc_step_q``), in both arms. With 0 extra rollouts ``Qhat^pi = r_b``, an
unbiased one-sample estimate (the outcome arm is then plain REINFORCE, with no gradient while no
row succeeds); with over 100 it is the paper's near-oracle Q^pi. (An exact Q^pi needs the policy's
distribution over every continuation: the transformer policy is not Markov in the automaton state,
so the DP of ``didactic.prover_values`` does not give it.)

:func:`summarise_runs` turns per-seed iterations-to-target into the experiment's headline: per-seed
ratios outcome / effective over the seeds where both arms reached the target, and no ratio at all
when an effective run was cut at the cap.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from prime_jax.config_checks import check_fields_at_least, check_positive
from prime_jax.models import ModelConfig, Transformer, token_logprobs
from prime_jax.pav import didactic, provers
from prime_jax.pav.mc_q import mc_step_q
from prime_jax.rollout import SamplingConfig, sample

BOS = didactic.EOS
MODES = ("outcome", "effective")


@dataclasses.dataclass(frozen=True, kw_only=True)
class DidacticConfig:
    """The didactic experiment (defaults: the paper's appendix B where it states them)."""

    sft_gamma: float = 5.0
    sft_samples: int = 3200
    sft_iterations: int = 50
    batch_size: int = 64
    learning_rate: float = 1e-3
    prover_gamma: float = 10.0
    alpha: float = 1.0
    q_rollouts: int = 0
    hidden_size: int = 64
    num_layers: int = 2

    def __post_init__(self):
        check_fields_at_least(self, {"sft_samples": 1, "sft_iterations": 1, "hidden_size": 1, "num_layers": 1,
                                     "batch_size": 2, "q_rollouts": 0})  # batch_size 2: leave-one-out baselines
        check_positive("DidacticConfig", "sft_gamma", self.sft_gamma)
        check_positive("DidacticConfig", "prover_gamma", self.prover_gamma)


def policy_config(config: DidacticConfig) -> ModelConfig:
    """A small Qwen2-style decoder over the task's ``VOCAB`` tokens."""
    return ModelConfig(vocab_size=didactic.VOCAB, hidden_size=config.hidden_size,
                       intermediate_size=2 * config.hidden_size, num_layers=config.num_layers, num_heads=4,
                       num_kv_heads=4, max_position_embeddings=2 * didactic.LENGTH, tie_word_embeddings=True,
                       bos_token_id=BOS, eos_token_id=didactic.EOS, pad_token_id=didactic.EOS)


SAMPLING = SamplingConfig(max_new_tokens=didactic.LENGTH, eos_id=didactic.EOS, pad_id=didactic.EOS,
                          decode_segments=1)


@functools.lru_cache(maxsize=8)
def make_update(graphdef, learning_rate: float) -> tuple[optax.GradientTransformation, Callable]:
    """Adam and its jitted step ``(params, opt_state, tokens_bl, mask_bl, w_bl) -> (params,
    opt_state, loss)`` on ``L = -(1/B) sum m w log pi`` (module docstring) for responses after BOS.
    Cached, so SFT and every run of one policy shape share a compiled step."""
    tx = optax.adam(learning_rate)

    def loss_fn(params, tokens_bl, mask_bl, w_bl):
        policy = nnx.merge(graphdef, params)
        bos_b1 = jnp.full((tokens_bl.shape[0], 1), BOS, jnp.int32)
        logp_bl = token_logprobs(policy, jnp.concatenate([bos_b1, tokens_bl], axis=1), last=tokens_bl.shape[1])
        return -jnp.sum(mask_bl * w_bl * logp_bl) / tokens_bl.shape[0]

    @jax.jit
    def update(params, opt_state, tokens_bl, mask_bl, w_bl):
        loss, grads = jax.value_and_grad(loss_fn)(params, tokens_bl, mask_bl, w_bl)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    return tx, update


def sft_policy(config: DidacticConfig, target, seed: int):
    """A fresh policy fit to ``sft_samples`` responses of ``mu_{sft_gamma}`` in ``sft_iterations``
    Adam steps (mini-batches cycle through the data); returns ``(graphdef, params)``."""
    rng = np.random.default_rng(seed)
    tokens_nl, mask_nl = didactic.sample_prover(target, config.sft_gamma, config.sft_samples, rng)
    graphdef, params = nnx.split(Transformer(policy_config(config), rngs=nnx.Rngs(seed)))
    tx, update = make_update(graphdef, config.learning_rate)
    opt_state = tx.init(params)
    batch = min(config.batch_size, config.sft_samples)
    order = rng.permutation(config.sft_samples)
    for i in range(config.sft_iterations):
        rows = order[np.arange(i * batch, (i + 1) * batch) % config.sft_samples]
        params, opt_state, _ = update(params, opt_state, tokens_nl[rows], mask_nl[rows],
                                      np.ones(mask_nl[rows].shape, np.float32))
    return graphdef, params


def leave_one_out_baseline(rewards_b: np.ndarray) -> np.ndarray:
    """``b_b = (sum_j r_j - r_b) / (B - 1)``."""
    return (rewards_b.sum() - rewards_b) / (rewards_b.shape[0] - 1)


def token_weights(mode: str, config: DidacticConfig, target, tokens_bl, mask_bl, rewards_b,
                  q_pi_bl=None) -> np.ndarray:
    """Per-token policy-gradient weights ``w_bl`` (module docstring), float32 (B, L), 0 off the mask.

    ``q_pi_bl``: ``Qhat^pi`` of both modes (default: the row's own outcome ``r_b``)."""
    baseline_b1 = leave_one_out_baseline(rewards_b)[:, None]
    q_pi_bl = np.broadcast_to(rewards_b[:, None], tokens_bl.shape) if q_pi_bl is None else q_pi_bl
    if mode == "outcome":
        return (mask_bl * (q_pi_bl - baseline_b1)).astype(np.float32)
    if mode != "effective":
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    q_mu_bl, v0_b = didactic.prover_step_q(tokens_bl, target, config.prover_gamma)
    adv_mu_bl = provers.process_advantages(q_mu_bl, v0_b, mask_bl)
    effective_bl = provers.effective_rewards(q_pi_bl, adv_mu_bl, mask_bl, alpha=config.alpha)
    return np.asarray(effective_bl - mask_bl * baseline_b1, np.float32)


def train_policy_gradient(mode: str, config: DidacticConfig, target, graphdef, params, *, iterations: int,
                          seed: int, stop: Callable[[list[float]], bool] = lambda rewards: False,
                          on_iteration: Callable[[float], None] = lambda reward: None) -> list[float]:
    """Run up to ``iterations`` REINFORCE steps from ``params`` with ``mode``'s weights; returns
    the mean training outcome reward of every iteration's batch. Stops early once
    ``stop(rewards so far)`` is true; ``on_iteration`` sees each batch's mean reward."""
    tx, update = make_update(graphdef, config.learning_rate)
    opt_state = tx.init(params)
    key = jax.random.key(seed)
    prompt_b1 = jnp.full((config.batch_size, 1), BOS, jnp.int32)
    history: list[float] = []
    for i in range(iterations):
        key_sample, key_q = jax.random.split(jax.random.fold_in(key, i))
        policy = nnx.merge(graphdef, params)
        rollouts = sample(policy, prompt_b1, jnp.ones_like(prompt_b1), key=key_sample, config=SAMPLING)
        tokens_bl, mask_bl = np.asarray(rollouts.tokens), np.asarray(rollouts.mask)
        rewards_b = didactic.outcome_rewards(tokens_bl, target)
        q_pi_bl = None
        if config.q_rollouts:
            decided_bl = didactic.matched_states(tokens_bl, target)[:, 1:] >= didactic.FOUND  # found or ended
            extra_bl = mc_step_q(policy, tokens_bl, prompt_id=BOS, num_rollouts=config.q_rollouts, key=key_q,
                                 reward_fn=lambda r: didactic.outcome_rewards(r, target), eos_id=didactic.EOS,
                                 determined_bl=decided_bl)
            q_pi_bl = (rewards_b[:, None] + config.q_rollouts * extra_bl) / (config.q_rollouts + 1)
        w_bl = token_weights(mode, config, target, tokens_bl, mask_bl, rewards_b, q_pi_bl)
        params, opt_state, _ = update(params, opt_state, tokens_bl, mask_bl.astype(np.float32), w_bl)
        history.append(float(rewards_b.mean()))
        on_iteration(history[-1])
        if stop(history):
            break
    return history


def iterations_to_target(rewards: list[float], target: float, window: int, cap: int) -> int | None:
    """First iteration count n (1-based) at which the mean of rewards ``[n - window, n)`` reaches
    ``target`` (a full window is required); None if it never does within ``cap`` iterations."""
    for n in range(window, min(len(rewards), cap) + 1):
        if np.mean(rewards[n - window:n]) >= target:
            return n
    return None


def seed_ratio(outcome: int | None, effective: int | None) -> float | None:
    """``outcome / effective`` iterations of one seed; None unless both arms reached the target."""
    return None if outcome is None or effective is None else outcome / effective


@dataclasses.dataclass(frozen=True, kw_only=True)
class DidacticSummary:
    """Per-seed iterations-to-target (None: cut at the cap) of both arms and what they support.

    ``effective`` / ``outcome`` are the mean iterations and ``ratio`` the mean of the per-seed ratios
    over ``both``, the seeds where both arms reached the target; ``refusal`` says why there is no
    ratio (an effective run cut at the cap, or no seed where both reached)."""

    effective_counts: tuple[int | None, ...]
    outcome_counts: tuple[int | None, ...]
    both: tuple[int, ...]
    ratios: tuple[float | None, ...]
    effective: float | None
    outcome: float | None
    ratio: float | None
    refusal: str | None

    def line(self, target: float, name: str = "pav_didactic") -> str:
        """``name: target=T effective=E outcome=O ratio=R outcome_reached=k/n`` (n/a / refused, never inf)."""
        num = lambda x: "n/a" if x is None else f"{x:.1f}"  # noqa: E731
        ratio = f"{self.ratio:.2f}" if self.ratio is not None else f"refused({self.refusal})"
        reached = sum(c is not None for c in self.outcome_counts)
        return (f"{name}: target={target:g} effective={num(self.effective)} outcome={num(self.outcome)} "
                f"ratio={ratio} outcome_reached={reached}/{len(self.outcome_counts)}")


def summarise_runs(outcome_counts, effective_counts) -> DidacticSummary:
    """The headline over seeds (same order in both lists): per-seed ratios where both reached."""
    outcome_counts, effective_counts = tuple(outcome_counts), tuple(effective_counts)
    if len(outcome_counts) != len(effective_counts):
        raise ValueError(f"one count per seed in both arms, got {len(outcome_counts)} outcome and "
                         f"{len(effective_counts)} effective")
    ratios = tuple(seed_ratio(o, e) for o, e in zip(outcome_counts, effective_counts))
    both = tuple(i for i, r in enumerate(ratios) if r is not None)
    refusal = None
    if any(e is None for e in effective_counts):
        refusal = "an effective run was cut at the cap"
    elif not both:
        refusal = "no seed where both arms reached the target"
    mean_over_both = lambda xs: float(np.mean([xs[i] for i in both])) if both else None  # noqa: E731
    return DidacticSummary(effective_counts=effective_counts, outcome_counts=outcome_counts, both=both,
                           ratios=ratios, effective=mean_over_both(effective_counts),
                           outcome=mean_over_both(outcome_counts),
                           ratio=None if refusal else mean_over_both(ratios), refusal=refusal)
