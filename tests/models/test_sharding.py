"""Sharded forward on an 8-device CPU mesh equals the single-device forward."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from prime_jax import sharding
from prime_jax.models import PRESETS, Transformer, from_pretrained, param_shardings

LAYOUTS = [(8, 1, 1), (2, 4, 1), (2, 2, 2), (1, 2, 4)]


def _mesh(data, fsdp, tensor):
    if jax.device_count() < 8:
        pytest.skip("needs 8 (virtual) devices: tests/conftest.py sets XLA_FLAGS")
    return sharding.make_mesh(sharding.MeshConfig(data=data, fsdp=fsdp, tensor=tensor))


def _inputs(vocab):
    rng = np.random.RandomState(0)
    ids = rng.randint(3, vocab, (8, 10)).astype(np.int32)
    mask = np.ones((8, 10), np.int32)
    mask[::3, :3] = 0
    return ids, mask


@nnx.jit
def _forward(model, ids, mask):
    return model(ids, attention_mask_bt=mask)


@pytest.fixture(scope="module")
def checkpoint(hf_checkpoints):
    """Qwen2 tiny checkpoint (4 heads over 2 kv heads) and its single-device logits."""
    directory = hf_checkpoints[("qwen2", False)][1]
    model = from_pretrained(directory)
    ids, mask = _inputs(model.config.vocab_size)
    return directory, _forward(model, jnp.asarray(ids), jnp.asarray(mask))


@pytest.mark.parametrize("layout", LAYOUTS, ids=lambda s: "x".join(map(str, s)))
def test_sharded_forward_matches(checkpoint, layout):
    directory, expected = checkpoint
    mesh = _mesh(*layout)
    model = from_pretrained(directory, mesh=mesh)
    data, fsdp, tensor = layout
    embed = model.embed[...]
    assert embed.sharding.shard_shape(embed.shape) == (96 // tensor, 32 // fsdp)
    if tensor == 4:  # 2 kv heads cannot split 4 ways: that dim is replicated instead of failing
        k, q = model.layers[0].attn.k_proj[...], model.layers[0].attn.q_proj[...]
        assert k.sharding.shard_shape(k.shape) == (32 // fsdp, 2, 8)
        assert q.sharding.shard_shape(q.shape) == (32 // fsdp, 1, 8)
    ids, mask = _inputs(model.config.vocab_size)
    batch = sharding.named_sharding(mesh, ("batch", "length"), ids.shape)
    with jax.set_mesh(mesh):
        logits = _forward(model, jax.device_put(ids, batch), jax.device_put(mask, batch))
    np.testing.assert_allclose(np.asarray(logits), np.asarray(expected), atol=2e-5, rtol=0)


def test_build_under_mesh_creates_sharded_params():
    """Built inside set_mesh (+ rules), variables are created sharded; forward matches."""
    mesh = _mesh(2, 2, 2)
    config = PRESETS["tiny"].replace(num_layers=1)
    ref = nnx.jit(lambda: Transformer(config, rngs=nnx.Rngs(3)))()
    with jax.set_mesh(mesh), nnx.logical_axis_rules(sharding.PARAM_RULES):
        model = nnx.jit(lambda: Transformer(config, rngs=nnx.Rngs(3)))()
    q = model.layers[0].attn.q_proj[...]  # (embed 32, heads 4, head_dim 8)
    assert q.sharding.shard_shape(q.shape) == (16, 2, 8)
    gate = model.layers[0].mlp.gate_proj[...]  # (embed 32, mlp 64)
    assert gate.sharding.shard_shape(gate.shape) == (16, 32)
    ids, mask = _inputs(config.vocab_size)
    expected = _forward(ref, jnp.asarray(ids), jnp.asarray(mask))
    with jax.set_mesh(mesh):
        logits = _forward(model, jnp.asarray(ids), jnp.asarray(mask))
    np.testing.assert_allclose(np.asarray(logits), np.asarray(expected), atol=2e-5, rtol=0)


def test_param_shardings_reshards_a_host_built_model(hf_checkpoints, checkpoint):
    """A model built without a mesh is laid out on one afterwards (kv heads 2 on tensor=4)."""
    directory, expected = checkpoint
    model = from_pretrained(directory)
    mesh = _mesh(1, 2, 4)
    shardings = param_shardings(model, mesh)
    nnx.update(model, jax.device_put(nnx.state(model, nnx.Param), shardings))
    k = model.layers[0].attn.k_proj[...]
    assert k.sharding.shard_shape(k.shape) == (16, 2, 8)
    ids, mask = _inputs(model.config.vocab_size)
    with jax.set_mesh(mesh):
        logits = _forward(model, jnp.asarray(ids), jnp.asarray(mask))
    np.testing.assert_allclose(np.asarray(logits), np.asarray(expected), atol=2e-5, rtol=0)


def test_optimizer_moments_are_sharded_like_their_weights():
    """Adam's mu and nu take each weight's sharding (replicated moments cost 2x the unsharded model
    on every chip: the 7B config's plan did not fit)."""
    import optax

    from prime_jax.training.state import init_optimizer

    mesh = _mesh(2, 2, 2)
    config = PRESETS["tiny"].replace(num_layers=1)
    with jax.set_mesh(mesh), nnx.logical_axis_rules(sharding.PARAM_RULES):
        model = nnx.jit(lambda: Transformer(config, rngs=nnx.Rngs(3)))()
    params = nnx.state(model, nnx.Param)
    opt = init_optimizer(optax.adamw(1e-3), params)
    adam = opt[0]
    for moments in (adam.mu, adam.nu):
        for param, moment in zip(jax.tree.leaves(params), jax.tree.leaves(moments)):
            assert moment.sharding.is_equivalent_to(param.sharding, param.ndim)
            assert not np.any(np.asarray(moment))
    q = adam.mu["layers"][0]["attn"]["q_proj"]
    assert q.sharding.shard_shape(q.shape) == (16, 2, 8)
