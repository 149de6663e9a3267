"""training.updates.clip_and_apply keeps the training state's dtypes across steps."""

import jax
import jax.numpy as jnp
import numpy as np
import optax

from prime_jax.training.updates import clip_and_apply


def test_bfloat16_weights_keep_bfloat16_adam_moments():
    """float32 gradients (the accumulator's dtype) must not promote the moments of bf16 weights to
    float32: the update would retrace on step 2 and the state would grow by half the weights' bytes."""
    params = {"w": jnp.linspace(-1, 1, 8, dtype=jnp.bfloat16), "b": jnp.zeros((3,), jnp.float32)}
    tx = optax.adamw(1e-2)
    opt = tx.init(params)
    grads = {"w": jnp.ones((8,), jnp.float32), "b": jnp.ones((3,), jnp.float32)}
    dtypes = jax.tree.map(lambda x: x.dtype, (params, opt))
    step = jax.jit(lambda p, o, g: clip_and_apply(tx, p, o, g, 1.0))
    new_params, new_opt, info = step(params, opt, grads)
    assert jax.tree.map(lambda x: x.dtype, (new_params, new_opt)) == dtypes
    assert not np.array_equal(np.asarray(new_params["w"], np.float32), np.asarray(params["w"], np.float32))
    assert float(info["skipped"]) == 0.0
    _, _, info = step(new_params, new_opt, {"w": grads["w"] * jnp.nan, "b": grads["b"]})
    assert float(info["skipped"]) == 1.0
