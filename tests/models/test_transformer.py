"""Transformer details: remat gives the same values and gradients; bf16 compute stays finite."""

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from prime_jax.models import from_pretrained, token_logprobs


def _loss(model, tokens, mask):
    return -jnp.sum(token_logprobs(model, tokens, mask))


def test_remat_matches_plain(hf_checkpoints):
    directory = hf_checkpoints[("qwen3", False)][1]
    plain, remat = from_pretrained(directory), from_pretrained(directory, remat=True)
    assert remat.config.remat and not plain.config.remat
    tokens = jnp.asarray(np.random.RandomState(0).randint(3, 96, (2, 6)), jnp.int32)
    mask = jnp.asarray([[0, 1, 1, 1, 1, 1], [1] * 6], jnp.int32)
    grad_fn = nnx.jit(nnx.value_and_grad(_loss))
    (loss_a, grads_a), (loss_b, grads_b) = grad_fn(plain, tokens, mask), grad_fn(remat, tokens,
                                                                                  mask)
    np.testing.assert_allclose(float(loss_a), float(loss_b), rtol=1e-6)
    for a, b in zip(jax.tree.leaves(grads_a), jax.tree.leaves(grads_b)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-6)
    assert any(float(jnp.abs(g).max()) > 0 for g in jax.tree.leaves(grads_a))


def test_bfloat16_compute_is_finite_float32_logits(hf_checkpoints):
    model = from_pretrained(hf_checkpoints[("qwen2", True)][1], dtype=jnp.bfloat16,
                            param_dtype=jnp.float32)
    assert model.embed[...].dtype == jnp.float32 and model.config.dtype == "bfloat16"
    tokens = jnp.asarray(np.random.RandomState(1).randint(3, 96, (2, 5)), jnp.int32)
    logits = nnx.jit(lambda m, x: m(x))(model, tokens)
    assert logits.dtype == jnp.float32 and bool(jnp.isfinite(logits).all())
