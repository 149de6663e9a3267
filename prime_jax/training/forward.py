"""Gradient-free forward passes over prompt + response rows: the response's token log-probs."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp
from flax import nnx

from prime_jax import sharding
from prime_jax.models import token_logprobs


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True, kw_only=True)
class SequenceBatch:
    """Prompt + response rows: ``tokens_bs``/``attention_mask_bs`` span prompt and
    response (S = P + L); ``response_mask_bl`` covers the last L positions."""

    tokens_bs: jax.Array
    attention_mask_bs: jax.Array
    response_mask_bl: jax.Array


def response_logprobs(graphdef, params, batch: SequenceBatch) -> jax.Array:
    """``logp[b, t] = log pi(y_t | x, y_<t)`` for the L response positions, float32."""
    model = nnx.merge(graphdef, params)
    return token_logprobs(model, batch.tokens_bs, batch.attention_mask_bs, last=batch.response_mask_bl.shape[1])


def make_logprob_fn(graphdef, rows_per_pass: int | None = None) -> Callable:
    """Jitted ``(params, batch) -> logp_bl``, at most ``rows_per_pass`` rows per forward pass.

    A batch of B > R = ``rows_per_pass`` rows is cut into K = B / R passes run one after the
    other (``lax.map``), so only one pass's activations exist at a time. Pass k takes the rows
    ``b = j K + k``: a row-sharded batch splits without moving data when every device's rows
    divide into the K passes (R a multiple of the data-parallel size data x fsdp; required).
    """
    def logprobs(params, batch: SequenceBatch) -> jax.Array:
        rows = batch.tokens_bs.shape[0]
        if rows_per_pass is None or rows <= rows_per_pass:
            return response_logprobs(graphdef, params, batch)
        if rows % rows_per_pass:
            raise ValueError(f"make_logprob_fn: a batch of {rows} rows does not split into passes "
                             f"of rows_per_pass={rows_per_pass} (PrimeConfig.logprob_rows_per_pass)")
        mesh = jax.sharding.get_abstract_mesh()
        shards = 1 if mesh.empty else sharding.data_parallel_size(mesh)
        if rows_per_pass % shards:
            raise ValueError(f"make_logprob_fn: rows_per_pass={rows_per_pass} (PrimeConfig."
                             f"logprob_rows_per_pass) is not a multiple of the {shards} batch shards "
                             "(data x fsdp) of the mesh")
        passes = rows // rows_per_pass
        # (B, ...) -> (R, K, ...) -> (K, R, ...): pass k holds rows j K + k.
        split = lambda x: jnp.swapaxes(x.reshape((rows_per_pass, passes) + x.shape[1:]), 0, 1)
        logp_kbl = jax.lax.map(lambda mb: response_logprobs(graphdef, params, mb),
                               jax.tree.map(split, batch))
        return jnp.swapaxes(logp_kbl, 0, 1).reshape((rows,) + logp_kbl.shape[2:])

    return jax.jit(logprobs)
