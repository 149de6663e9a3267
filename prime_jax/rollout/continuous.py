"""Continuous batching: a fixed pool of decode slots that take queued prompts as rows finish.

``sample_continuous(policy, prompt_ids_rp, prompt_mask_rp, *, key, config, num_slots)`` decodes
R left-padded requests (R, P) with S = ``num_slots`` rows of KV cache, all in one compiled
``lax.while_loop`` (static shapes: one compilation per (R, P, S, config), none per request):

* each outer step first refills: while a slot is free and requests are queued, the next request
  r is prefilled alone (a (1, P) forward) into that slot's cache row, slots ``[0, P)``, and its
  first token is chosen from the prefill's last logits;
* then every slot takes one decode step: slot s, holding request r at step i, feeds its last
  token at position ``prompt_len_r + i - 1``, writes its key/value at cache slot ``P + i - 1``
  (a per-row write index: the model is ``vmap``-ed over slots, each with a (1, ...) cache), and
  reads slots ``<= P + i - 1`` under the mask. A slot is freed when its request emits an EOS
  or reaches ``max_new_tokens``; stale keys of the previous request past the prefill are never
  read (the causal mask stops at ``P + i - 1`` and this request has rewritten those slots);
* the loop ends when no slot is busy and the queue is empty.

Per-slot layout is the one ``sample`` gives each row (prompt in ``[0, P)``, step i at
``P + i - 1``, same positions), over the full ``P + L - 1`` slots (no growing segments).

Randomness, independent of slot assignment and of the other requests: request r at step i
draws from ``fold_in(fold_in(key, r), i)`` over its own (1, V) logits. This differs from
``sample``'s per-step (B, V) draw, so with temperature > 0 the tokens equal those of a
static batch under this same per-request scheme (``num_slots >= R``; the tests check any
``num_slots`` gives the same), not those of ``sample``. Greedy tokens equal ``sample``'s
whenever the per-row forward gives the same numbers up to rounding; on XLA:CPU log-probs are
bit-equal to ``sample`` with ``decode_segments=1`` (the same cache length) and within an ulp
otherwise (other cache lengths or pool sizes).

Results come back in request order as ``Rollouts`` (R, L), with ``sample``'s conventions.
Memory: the KV cache of ``sample`` with B = S rows and ``P + L - 1`` slots, plus (R, L)
outputs.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from prime_jax.models.cache import KVCache
from prime_jax.models.transformer import Transformer
from prime_jax.rollout.config import Rollouts, SamplingConfig, check_left_padded, is_eos
from prime_jax.rollout.sampling import choose_tokens


class SlotCarry(NamedTuple):
    """Loop state. Slot s holds request ``request_s[s]`` (R = free) at step ``step_s[s]`` with
    last token ``prev_s[s]``; ``next_r`` is the first queued request; outputs are per request."""

    cache: KVCache
    request_s: jax.Array
    step_s: jax.Array
    prev_s: jax.Array
    next_r: jax.Array
    tokens_rl: jax.Array
    logp_rl: jax.Array
    length_r: jax.Array
    eos_r: jax.Array


def pick_request_tokens(logits_sv, request_s, step_s, key, config: SamplingConfig):
    """Per-row choice from ``fold_in(fold_in(key, request), step)``; (token_s, unmodified logp_s)."""
    def one(logits_v, r, i):
        k = jax.random.fold_in(jax.random.fold_in(key, r), i)
        return choose_tokens(logits_v[None], k, temperature=config.temperature,
                             top_k=config.top_k, top_p=config.top_p)[0]

    token_s = jax.vmap(one)(logits_sv, request_s, step_s)
    logp_sv = jax.nn.log_softmax(logits_sv.astype(jnp.float32), axis=-1)
    return token_s, jnp.take_along_axis(logp_sv, token_s[:, None], axis=-1)[:, 0]


def prefill_request(policy: Transformer, prompt_ids_rp, prompt_mask_rp, r, key, config: SamplingConfig):
    """Request r's prompt alone through a (1, P) dense cache: ``(row_cache, token_1, logp_1, eos)``,
    its first token chosen from the prefill's last logits with the request's own key."""
    ids_1p = jax.lax.dynamic_slice_in_dim(prompt_ids_rp, r, 1)
    mask_1p = jax.lax.dynamic_slice_in_dim(prompt_mask_rp, r, 1)
    h_1pd, row = policy.hidden_states(ids_1p, attention_mask_bt=mask_1p, cache_index=0,
                                      cache=policy.init_cache(1, prompt_ids_rp.shape[1], dtype=config.cache_dtype))
    logits_1v = policy.logits(h_1pd[:, -1:])[:, 0]
    token_1, logp_1 = pick_request_tokens(logits_1v, r[None], jnp.zeros((1,), jnp.int32), key, config)
    return row, token_1, logp_1, is_eos(token_1, config.eos_ids)[0]


def _decode_slots(policy: Transformer, cache: KVCache, token_s, position_s, index_s):
    """One decode step of every slot, slot s writing cache slot ``index_s[s]``: (logits_sv, cache)."""
    def one(token, position, index, keys, values, mask_c):
        row = KVCache(keys=tuple(k[None] for k in keys), values=tuple(v[None] for v in values),
                      mask_bs=mask_c[None], index=jnp.zeros((), jnp.int32))
        logits_11v, row = policy(token.reshape(1, 1), positions_bt=position.reshape(1, 1),
                                 cache=row, cache_index=index)
        return (logits_11v[0, 0], tuple(k[0] for k in row.keys), tuple(v[0] for v in row.values),
                row.mask_bs[0])

    logits_sv, keys, values, mask_sc = jax.vmap(one)(token_s, position_s, index_s, cache.keys,
                                                     cache.values, cache.mask_bs)
    return logits_sv, cache.replace(keys=keys, values=values, mask_bs=mask_sc)


def _continuous_impl(graphdef, state, prompt_ids_rp, prompt_mask_rp, key, *, num_slots: int,
                     config: SamplingConfig):
    """Traced body of ``sample_continuous``: refill free slots, step all slots, until drained."""
    policy: Transformer = nnx.merge(graphdef, state)
    (r_total, p), s, steps = prompt_ids_rp.shape, num_slots, config.max_new_tokens
    prompt_ids_rp = prompt_ids_rp.astype(jnp.int32)
    prompt_mask_rp = prompt_mask_rp.astype(jnp.int32)
    prompt_len_r = jnp.sum(prompt_mask_rp, axis=-1, dtype=jnp.int32)
    eos_ids = config.eos_ids

    def refill(c: SlotCarry) -> SlotCarry:
        """Prefill request ``next_r`` into the first free slot and choose its first token."""
        slot, r = jnp.argmax(c.request_s == r_total), c.next_r
        row, token_1, logp_1, eos = prefill_request(policy, prompt_ids_rp, prompt_mask_rp, r, key, config)
        cache = c.cache.replace(
            keys=tuple(jax.lax.dynamic_update_slice(k, kr.astype(k.dtype), (slot, 0, 0, 0))
                       for k, kr in zip(c.cache.keys, row.keys)),
            values=tuple(jax.lax.dynamic_update_slice(v, vr.astype(v.dtype), (slot, 0, 0, 0))
                         for v, vr in zip(c.cache.values, row.values)),
            mask_bs=jax.lax.dynamic_update_slice(c.cache.mask_bs, row.mask_bs, (slot, 0)))
        ended = eos | (steps == 1)
        return SlotCarry(
            cache=cache, request_s=c.request_s.at[slot].set(jnp.where(ended, r_total, r)),
            step_s=c.step_s.at[slot].set(1), prev_s=c.prev_s.at[slot].set(token_1[0]),
            next_r=r + 1, tokens_rl=c.tokens_rl.at[r, 0].set(token_1[0]),
            logp_rl=c.logp_rl.at[r, 0].set(logp_1[0]), length_r=c.length_r.at[r].set(1),
            eos_r=c.eos_r.at[r].set(eos))

    def can_refill(c: SlotCarry):
        return jnp.any(c.request_s == r_total) & (c.next_r < r_total)

    def step(c: SlotCarry) -> SlotCarry:
        """Refill, then one decode step of every busy slot (free slots compute and are dropped)."""
        c = jax.lax.while_loop(can_refill, refill, c)
        busy_s = c.request_s < r_total
        safe_r_s = jnp.minimum(c.request_s, r_total - 1)
        logits_sv, cache = _decode_slots(policy, c.cache, c.prev_s,
                                         prompt_len_r[safe_r_s] + c.step_s - 1, p + c.step_s - 1)
        token_s, logp_s = pick_request_tokens(logits_sv, c.request_s, c.step_s, key, config)
        token_s = jnp.where(busy_s, token_s, config.pad_id)
        eos_s = busy_s & is_eos(token_s, eos_ids)
        # Free slots carry request index R: their writes fall out of bounds and are dropped.
        write = dict(mode="drop")
        ended_s = eos_s | (c.step_s + 1 >= steps)
        return SlotCarry(
            cache=cache, request_s=jnp.where(busy_s & ended_s, r_total, c.request_s),
            step_s=c.step_s + busy_s.astype(jnp.int32), prev_s=token_s, next_r=c.next_r,
            tokens_rl=c.tokens_rl.at[c.request_s, c.step_s].set(token_s, **write),
            logp_rl=c.logp_rl.at[c.request_s, c.step_s].set(logp_s, **write),
            length_r=c.length_r.at[c.request_s].set(c.step_s + 1, **write),
            eos_r=c.eos_r.at[c.request_s].set(eos_s, **write))

    carry = SlotCarry(
        cache=policy.init_cache(s, p + steps - 1, dtype=config.cache_dtype),
        request_s=jnp.full((s,), r_total, jnp.int32), step_s=jnp.zeros((s,), jnp.int32),
        prev_s=jnp.zeros((s,), jnp.int32), next_r=jnp.int32(0),
        tokens_rl=jnp.full((r_total, steps), config.pad_id, jnp.int32),
        logp_rl=jnp.zeros((r_total, steps), jnp.float32),
        length_r=jnp.zeros((r_total,), jnp.int32), eos_r=jnp.zeros((r_total,), bool))
    carry = jax.lax.while_loop(
        lambda c: jnp.any(c.request_s < r_total) | (c.next_r < r_total), step, carry)
    mask_rl = (jnp.arange(steps)[None, :] < carry.length_r[:, None]).astype(jnp.int32)
    return Rollouts(tokens=carry.tokens_rl, logprobs=carry.logp_rl, mask=mask_rl,
                    truncated=~carry.eos_r, lengths=carry.length_r)


_continuous_jit = jax.jit(_continuous_impl, static_argnames=("graphdef", "num_slots", "config"))


def sample_continuous(policy: Transformer, prompt_ids_rp: jax.Array, prompt_mask_rp: jax.Array, *,
                      key: jax.Array, config: SamplingConfig, num_slots: int) -> Rollouts:
    """Decode R left-padded requests through ``num_slots`` recycled cache rows.

    Returns ``Rollouts`` (R, L) in request order, with ``sample``'s conventions (pad after EOS,
    unmodified log-probs, mask through EOS, ``truncated`` = no EOS in L tokens). See the module
    docstring for the loop, the per-request keys and what equals ``sample``.
    """
    if num_slots < 1:
        raise ValueError(f"sample_continuous: num_slots must be >= 1, got {num_slots}")
    check_left_padded(prompt_mask_rp, "sample_continuous")
    graphdef, state = nnx.split(policy)
    return _continuous_jit(graphdef, state, prompt_ids_rp, prompt_mask_rp, key,
                           num_slots=num_slots, config=config)
