"""Continuous batching over a block-allocated ("paged") KV cache.

``sample_paged(policy, prompt_ids_rp, prompt_mask_rp, *, key, config, num_slots, num_blocks,
block_size)`` decodes R left-padded requests (R, P) through S = ``num_slots`` decode slots, like
``continuous.sample_continuous``, but the slots share a pool of ``num_blocks`` blocks of
``block_size`` cache slots (``models.cache.PagedKVCache``) instead of owning ``P + L - 1`` dense
slots each. All in one compiled ``lax.while_loop`` (static shapes):

* admission: while a slot is free, the first queued request r (smallest index) enters it if the
  pool has ``ceil(len_r / block_size)`` free blocks for its ``len_r`` real prompt tokens; its
  prompt is prefilled alone (a dense (1, P) forward) and the real tokens' keys / values are
  copied into those blocks, logical slots ``[0, len_r)`` (left padding takes no blocks);
* decode: every busy slot writes its token at logical slot ``len_r + i - 1`` (its position); a
  row entering a new block takes one from the pool;
* preemption: when the pool cannot serve every row that needs a block this step, the youngest
  busy requests (latest admitted) give their blocks back and return to the queue, to restart
  from their prompt. Tokens come from ``fold_in(fold_in(key, r), i)`` over each request's own
  logits (as in ``sample_continuous``), so a restart draws the same tokens: preemption changes
  no result, only time. The oldest request is never preempted for another, and the pool must
  hold one whole request (``ceil((P + L - 1) / block_size)`` blocks), so every request ends;
* a request ends at EOS or after ``max_new_tokens`` tokens and frees its slot and blocks;
* groups: on a mesh the pool is G = (batch shards) pools side by side (``pool_groups``): slot s
  takes blocks of its own shard's group only, and admission, growth and preemption count each
  group's blocks (the oldest request of a group is never preempted, and each group holds one
  whole request). Each device then holds its slots' blocks only: the pool's bytes per device
  fall with the device count, and no block crosses devices.

Results equal ``sample_continuous`` with the same key up to float rounding (the attention sums
the same keys in another layout): the same greedy tokens unless two candidates tie within an
ulp. Memory: the pool's ``2 * layers * num_blocks * block_size * kv_heads * head_dim`` values
against ``S * (P + L - 1)`` slots per layer for the dense pool; the CPU reference adds one
layer's dense view of the S rows' blocks per step, the accelerator kernels read the blocks in
place (``models.attention_paged``).
"""

from __future__ import annotations

import logging
from typing import NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from prime_jax import sharding
from prime_jax.models.attention_paged import per_pool_shard
from prime_jax.models.cache import PagedKVCache
from prime_jax.models.transformer import Transformer
from prime_jax.rollout.config import Rollouts, SamplingConfig, check_left_padded, is_eos
from prime_jax.rollout.continuous import pick_request_tokens, prefill_request

_LOG = logging.getLogger(__name__)


class PagedCarry(NamedTuple):
    """Loop state: the pool and block tables, which blocks are free, slot s's request
    (R = free), step, last token and admission time; the queue; outputs per request."""

    cache: PagedKVCache
    free_n: jax.Array
    request_s: jax.Array
    step_s: jax.Array
    prev_s: jax.Array
    admitted_s: jax.Array
    clock: jax.Array
    pending_r: jax.Array
    tokens_rl: jax.Array
    logp_rl: jax.Array
    length_r: jax.Array
    eos_r: jax.Array
    preemptions: jax.Array


class PagedStats(NamedTuple):
    """``preemptions``: requests sent back to the queue; ``peak_blocks``: most blocks held at once."""

    preemptions: jax.Array
    peak_blocks: jax.Array


def blocks_for(tokens, block_size: int):
    """``ceil(tokens / block_size)``."""
    return (tokens + block_size - 1) // block_size


def pool_groups(num_slots: int, num_blocks: int, whole: int) -> int:
    """G for ``PagedKVCache``: the current mesh's batch shards when they divide the slots and
    the blocks and a shard's blocks hold one whole request, else 1 (and a warning: the pool is
    then whole on every device)."""
    mesh = jax.sharding.get_abstract_mesh()
    shards = 1 if mesh.empty else sharding.data_parallel_size(mesh)
    if shards == 1:
        return 1
    if num_slots % shards or num_blocks % shards or num_blocks // shards < whole:
        _LOG.warning("sample_paged: the pool of %d KV blocks is whole on each of %d batch shards; with num_slots "
                     "(%d) and num_blocks multiples of %d and num_blocks / %d >= %d (one whole request) each "
                     "shard would hold its own slots' blocks", num_blocks, shards, num_slots, shards, shards, whole)
        return 1
    return shards


def _paged_impl(graphdef, state, prompt_ids_rp, prompt_mask_rp, key, *, num_slots: int,
                num_blocks: int, block_size: int, config: SamplingConfig, groups: int | None = None):
    """Traced body of ``sample_paged``: admit, grow or preempt, step every slot, until drained."""
    policy: Transformer = nnx.merge(graphdef, state)
    (r_total, p), s, steps = prompt_ids_rp.shape, num_slots, config.max_new_tokens
    bs, nb = block_size, num_blocks
    prompt_blocks, row_blocks = blocks_for(p, bs), blocks_for(p + steps - 1, bs)
    g = pool_groups(s, nb, row_blocks) if groups is None else groups
    group_s, group_n = jnp.arange(s) // (s // g), jnp.arange(nb) // (nb // g)
    prompt_ids_rp = prompt_ids_rp.astype(jnp.int32)
    prompt_mask_rp = prompt_mask_rp.astype(jnp.int32)
    prompt_len_r = jnp.sum(prompt_mask_rp, axis=-1, dtype=jnp.int32)
    eos_ids = config.eos_ids
    slots = jnp.arange(s)

    def release(c: PagedCarry, slots_s, requeue: bool) -> PagedCarry:
        table = c.cache.table_bm
        freed = jnp.where(slots_s[:, None], table, nb).reshape(-1)
        back_r = jnp.where(slots_s, c.request_s, r_total)  # requests leaving their slots
        cache = c.cache.replace(table_bm=jnp.where(slots_s[:, None], nb, table),
                                mask_bs=jnp.where(slots_s[:, None], False, c.cache.mask_bs))
        c = c._replace(cache=cache, free_n=c.free_n.at[freed].set(True, mode="drop"),
                       request_s=jnp.where(slots_s, r_total, c.request_s))
        if requeue:
            c = c._replace(pending_r=c.pending_r.at[back_r].set(True, mode="drop"),
                           length_r=c.length_r.at[back_r].set(0, mode="drop"),
                           preemptions=c.preemptions + jnp.sum(slots_s, dtype=jnp.int32))
        return c

    def first_pending(c: PagedCarry):
        return jnp.argmax(c.pending_r)

    def per_group(x_s):
        return jnp.sum(x_s.reshape(g, -1), axis=1, dtype=jnp.int32)

    def admissible_slots(c: PagedCarry):
        """Free slots whose group has blocks for the first queued request's prompt beyond those
        its busy rows take this step (else it would be the youngest there, preempted at once)."""
        need = blocks_for(prompt_len_r[first_pending(c)], bs)
        _, _, needs_s = write_slots(c)
        spare_g = per_group(c.free_n) - per_group(needs_s)
        return (c.request_s == r_total) & (spare_g[group_s] >= need)

    def can_admit(c: PagedCarry):
        return jnp.any(admissible_slots(c)) & jnp.any(c.pending_r)

    def admit(c: PagedCarry) -> PagedCarry:
        """Prefill the first queued request into the first admissible slot's new blocks."""
        slot, r = jnp.argmax(admissible_slots(c)), first_pending(c)
        length = prompt_len_r[r]
        row, token_1, logp_1, eos = prefill_request(policy, prompt_ids_rp, prompt_mask_rp, r, key, config)
        # Logical slot j of the row holds prompt column p - length + j (the real tokens only).
        j = jnp.arange(prompt_blocks * bs)
        source_j = jnp.clip(p - length + j, 0, p - 1)
        free_ids = jnp.nonzero(c.free_n & (group_n == group_s[slot]), size=prompt_blocks, fill_value=nb)[0]
        ids_m = jnp.where(jnp.arange(prompt_blocks) < blocks_for(length, bs), free_ids, nb)

        def blocks_of(dense_1ksh, dtype):  # the real tokens as (kv_heads, prompt_blocks, block_size, head_dim)
            rows_kjh = jnp.where((j < length)[None, :, None], dense_1ksh[0][:, source_j], 0)
            k, _, h = rows_kjh.shape
            return rows_kjh.reshape(k, prompt_blocks, bs, h).astype(dtype)

        def write(local, pools, _, shared):  # each shard writes the blocks it holds
            ids_m, blocks = shared
            return tuple(pool.at[:, local(ids_m)].set(blocks_kmsh, mode="drop")
                         for pool, blocks_kmsh in zip(pools, blocks))

        pools = c.cache.keys + c.cache.values
        blocks = tuple(blocks_of(dense, pool.dtype) for pool, dense in zip(pools, row.keys + row.values))
        pools, layers = per_pool_shard(write, g, pools, shared=(ids_m, blocks), out="pool"), len(c.cache.keys)
        table_m = jnp.full((row_blocks,), nb, jnp.int32).at[:prompt_blocks].set(ids_m)
        cache = c.cache.replace(
            keys=pools[:layers], values=pools[layers:],
            table_bm=c.cache.table_bm.at[slot].set(table_m),
            mask_bs=c.cache.mask_bs.at[slot].set(jnp.arange(row_blocks * bs) < length))
        c = c._replace(
            cache=cache, free_n=c.free_n.at[ids_m].set(False, mode="drop"),
            request_s=c.request_s.at[slot].set(r), step_s=c.step_s.at[slot].set(1),
            prev_s=c.prev_s.at[slot].set(token_1[0]), admitted_s=c.admitted_s.at[slot].set(c.clock),
            clock=c.clock + 1, pending_r=c.pending_r.at[r].set(False),
            tokens_rl=c.tokens_rl.at[r].set(jnp.full((steps,), config.pad_id, jnp.int32).at[0].set(token_1[0])),
            logp_rl=c.logp_rl.at[r].set(jnp.zeros((steps,), jnp.float32).at[0].set(logp_1[0])),
            length_r=c.length_r.at[r].set(1), eos_r=c.eos_r.at[r].set(eos))
        return release(c, (slots == slot) & (eos | (steps == 1)), requeue=False)

    def write_slots(c: PagedCarry):
        busy_s = c.request_s < r_total
        safe_r_s = jnp.minimum(c.request_s, r_total - 1)
        write_s = jnp.where(busy_s, prompt_len_r[safe_r_s] + c.step_s - 1, 0)
        block_s = c.cache.table_bm[slots, write_s // bs]
        return busy_s, write_s, busy_s & (block_s == nb)

    def short_g(c: PagedCarry):
        _, _, needs_s = write_slots(c)
        return per_group(needs_s) > per_group(c.free_n)

    def preempt_youngest(c: PagedCarry) -> PagedCarry:
        """Send the youngest request of the first group short of blocks back to the queue."""
        there_s = (c.request_s < r_total) & (group_s == jnp.argmax(short_g(c)))
        youngest = jnp.argmax(jnp.where(there_s, c.admitted_s, -1))
        return release(c, slots == youngest, requeue=True)

    def step(c: PagedCarry) -> PagedCarry:
        c = jax.lax.while_loop(can_admit, admit, c)
        c = jax.lax.while_loop(lambda c: jnp.any(short_g(c)), preempt_youngest, c)
        busy_s, write_s, needs_s = write_slots(c)
        # The k-th row needing a block in its group takes the group's k-th free block.
        rank_gs = jnp.cumsum(needs_s.reshape(g, -1), axis=1) - 1
        local_gs = jax.vmap(lambda free_n: jnp.nonzero(free_n, size=s // g, fill_value=nb // g)[0])(
            c.free_n.reshape(g, -1))
        free_gs = jnp.where(local_gs < nb // g, local_gs + (jnp.arange(g) * (nb // g))[:, None], nb)
        taken_gs = jnp.take_along_axis(free_gs, jnp.clip(rank_gs, 0, s // g - 1), axis=1)
        new_s = jnp.where(needs_s, taken_gs.reshape(s), nb)
        column_s = write_s // bs
        table = c.cache.table_bm.at[slots, column_s].set(
            jnp.where(needs_s, new_s, c.cache.table_bm[slots, column_s]))
        c = c._replace(cache=c.cache.replace(table_bm=table), free_n=c.free_n.at[new_s].set(False, mode="drop"))
        logits_s1v, cache = policy(c.prev_s[:, None], positions_bt=write_s[:, None],
                                   attention_mask_bt=busy_s[:, None].astype(jnp.int32), cache=c.cache,
                                   cache_index=write_s)
        token_s, logp_s = pick_request_tokens(logits_s1v[:, 0], c.request_s, c.step_s, key, config)
        token_s = jnp.where(busy_s, token_s, config.pad_id)
        eos_s = busy_s & is_eos(token_s, eos_ids)
        write = dict(mode="drop")  # free slots carry request index R: their writes are dropped
        c = c._replace(
            cache=cache, step_s=c.step_s + busy_s.astype(jnp.int32), prev_s=token_s,
            tokens_rl=c.tokens_rl.at[c.request_s, c.step_s].set(token_s, **write),
            logp_rl=c.logp_rl.at[c.request_s, c.step_s].set(logp_s, **write),
            length_r=c.length_r.at[c.request_s].set(c.step_s + 1, **write),
            eos_r=c.eos_r.at[c.request_s].set(eos_s, **write))
        return release(c, busy_s & (eos_s | (c.step_s >= steps)), requeue=False)

    def held(c: PagedCarry):
        return nb - jnp.sum(c.free_n, dtype=jnp.int32)

    def body(carry):
        c, peak = carry
        c = step(c)
        return c, jnp.maximum(peak, held(c))

    cache = PagedKVCache.init(num_layers=policy.config.num_layers, num_blocks=nb, block_size=bs,
                              batch_size=s, max_blocks=row_blocks, num_kv_heads=policy.config.num_kv_heads,
                              head_dim=policy.config.head_dim,
                              dtype=config.cache_dtype or policy.config.compute_dtype, groups=g)
    carry = PagedCarry(
        cache=cache, free_n=jnp.ones((nb,), bool), request_s=jnp.full((s,), r_total, jnp.int32),
        step_s=jnp.zeros((s,), jnp.int32), prev_s=jnp.zeros((s,), jnp.int32),
        admitted_s=jnp.zeros((s,), jnp.int32), clock=jnp.int32(0), pending_r=jnp.ones((r_total,), bool),
        tokens_rl=jnp.full((r_total, steps), config.pad_id, jnp.int32),
        logp_rl=jnp.zeros((r_total, steps), jnp.float32), length_r=jnp.zeros((r_total,), jnp.int32),
        eos_r=jnp.zeros((r_total,), bool), preemptions=jnp.int32(0))
    carry, peak = jax.lax.while_loop(
        lambda cp: jnp.any(cp[0].request_s < r_total) | jnp.any(cp[0].pending_r), body, (carry, jnp.int32(0)))
    mask_rl = (jnp.arange(steps)[None, :] < carry.length_r[:, None]).astype(jnp.int32)
    rollouts = Rollouts(tokens=carry.tokens_rl, logprobs=carry.logp_rl, mask=mask_rl,
                        truncated=~carry.eos_r, lengths=carry.length_r)
    return rollouts, PagedStats(preemptions=carry.preemptions, peak_blocks=peak)


_paged_jit = jax.jit(_paged_impl, static_argnames=("graphdef", "num_slots", "num_blocks", "block_size",
                                                   "config", "groups"))


def sample_paged(policy: Transformer, prompt_ids_rp: jax.Array, prompt_mask_rp: jax.Array, *,
                 key: jax.Array, config: SamplingConfig, num_slots: int, num_blocks: int,
                 block_size: int = 16, groups: int | None = None, with_stats: bool = False):
    """Decode R left-padded requests through ``num_slots`` slots over a pool of ``num_blocks``
    KV blocks of ``block_size`` slots (module docstring). ``groups``: the pool's G (default
    ``pool_groups``: the mesh's batch shards where they fit). Returns ``Rollouts`` (R, L) in
    request order, as ``sample_continuous`` does; with ``with_stats`` also ``PagedStats``."""
    if num_slots < 1 or block_size < 1:
        raise ValueError(f"sample_paged: num_slots and block_size must be >= 1, got {num_slots}, {block_size}")
    p = prompt_ids_rp.shape[1]
    whole = blocks_for(p + config.max_new_tokens - 1, block_size)
    if num_blocks < whole:
        raise ValueError(f"sample_paged: num_blocks={num_blocks} cannot hold one request of {p} prompt + "
                         f"{config.max_new_tokens - 1} cached tokens ({whole} blocks of {block_size})")
    if groups is not None and (groups < 1 or num_slots % groups or num_blocks % groups
                               or num_blocks // groups < whole):
        raise ValueError(f"sample_paged: groups={groups} must divide num_slots={num_slots} and num_blocks="
                         f"{num_blocks}, each group holding one whole request ({whole} blocks)")
    check_left_padded(prompt_mask_rp, "sample_paged")
    graphdef, state = nnx.split(policy)
    rollouts, stats = _paged_jit(graphdef, state, prompt_ids_rp, prompt_mask_rp, key, num_slots=num_slots,
                                 num_blocks=num_blocks, block_size=block_size, config=config, groups=groups)
    return (rollouts, stats) if with_stats else rollouts
