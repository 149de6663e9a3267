"""Attention backends against the einsum reference: values and gradients on the CPU (Pallas
kernels interpreted), greedy rollouts identical across backends, ``auto`` per platform.

Tolerances (float32): outputs at real query positions within ``ATOL = 2e-5`` of the einsum,
gradients of a padding-masked loss w.r.t. q, k, v within ``GRAD_ATOL = 5e-5``.
"""

import jax
import jax.extend
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from prime_jax import sharding
from prime_jax.models import ModelConfig, Transformer
from prime_jax.models import attention as attn
from prime_jax.models.attention_paged import paged_attend
from prime_jax.rollout import SamplingConfig, sample

ATOL, GRAD_ATOL = 2e-5, 5e-5
KERNELS = {
    "dot_product_attention": attn.fused_attention,
    "pallas_gpu": lambda *a: attn.pallas_gpu_attention(*a, interpret=True),
    "splash": lambda *a: attn.splash_attention(*a, interpret=True),
}


def _inputs(b=2, t=11, n=4, k=2, h=8, seed=0):
    rng = np.random.RandomState(seed)
    q = jnp.asarray(rng.randn(b, t, n, h), jnp.float32)
    kv = [jnp.asarray(rng.randn(b, k, t, h), jnp.float32) for _ in range(2)]
    mask_bt = np.ones((b, t), bool)
    mask_bt[0, :3] = False  # left padding
    mask_bt[-1, t - 2:] = False  # right padding (after an EOS)
    return q, kv[0], kv[1], mask_bt


def _masked_loss(fn, mask_bt):
    weights = jnp.asarray(np.random.RandomState(1).randn(*mask_bt.shape, 1, 1), jnp.float32)

    def loss(q, k, v):
        out = fn(q, k, v, attn.AttentionMask.causal(jnp.asarray(mask_bt)))
        return jnp.sum(out * weights * mask_bt[:, :, None, None])

    return loss


@pytest.mark.parametrize("backend", sorted(KERNELS))
def test_backend_values_and_gradients_match_einsum(backend):
    """GQA (4 query heads over 2 kv heads), causal, left and right padding; head_dim 8 (splash
    pads it to 128, pallas_gpu to 16)."""
    q, k, v, mask_bt = _inputs()
    mask = attn.AttentionMask.causal(jnp.asarray(mask_bt))
    ref = np.asarray(attn.einsum_attention(q, k, v, mask))
    out = np.asarray(KERNELS[backend](q, k, v, mask))
    np.testing.assert_allclose(out[mask_bt], ref[mask_bt], rtol=0, atol=ATOL)
    grads_ref = jax.grad(_masked_loss(attn.einsum_attention, mask_bt), argnums=(0, 1, 2))(q, k, v)
    grads = jax.grad(_masked_loss(KERNELS[backend], mask_bt), argnums=(0, 1, 2))(q, k, v)
    for name, g, g_ref in zip("qkv", grads, grads_ref):
        np.testing.assert_allclose(np.asarray(g), np.asarray(g_ref), rtol=0, atol=GRAD_ATOL, err_msg=name)


def test_cudnn_odd_length_padding_changes_no_value_or_gradient(monkeypatch):
    """cuDNN itself needs a GPU (tests/models/test_attention_gpu.py compiles it); its odd-length
    padding (T = 11 -> 12) is checked here with XLA's fused attention standing in for cuDNN:
    values and gradients as the einsum's."""
    fused, lengths = attn.fused_attention, []

    def stand_in(q, k, v, mask, implementation="xla"):
        lengths.append((q.shape[1], k.shape[2], implementation))
        return fused(q, k, v, mask)

    monkeypatch.setattr(attn, "fused_attention", stand_in)
    q, k, v, mask_bt = _inputs()
    mask = attn.AttentionMask.causal(jnp.asarray(mask_bt))
    out = np.asarray(attn.cudnn_attention(q, k, v, mask))
    assert lengths == [(12, 12, "cudnn")] and out.shape == q.shape
    np.testing.assert_allclose(out[mask_bt], np.asarray(attn.einsum_attention(q, k, v, mask))[mask_bt],
                               rtol=0, atol=ATOL)
    grads_ref = jax.grad(_masked_loss(attn.einsum_attention, mask_bt), argnums=(0, 1, 2))(q, k, v)
    grads = jax.grad(_masked_loss(attn.cudnn_attention, mask_bt), argnums=(0, 1, 2))(q, k, v)
    for name, g, g_ref in zip("qkv", grads, grads_ref):
        np.testing.assert_allclose(np.asarray(g), np.asarray(g_ref), rtol=0, atol=GRAD_ATOL, err_msg=name)


def test_splash_pads_head_dim_64_to_the_lane_width():
    """The 0.5B model's head_dim 64 goes through splash as 128 (zero columns) and back."""
    q, k, v, mask_bt = _inputs(b=1, t=5, n=2, k=1, h=64, seed=3)
    mask = attn.AttentionMask.causal(jnp.asarray(mask_bt))
    assert attn.pad_head_dim(q, 128).shape[-1] == 128
    out = np.asarray(attn.splash_attention(q, k, v, mask, interpret=True))
    np.testing.assert_allclose(out[mask_bt], np.asarray(attn.einsum_attention(q, k, v, mask))[mask_bt],
                               rtol=0, atol=ATOL)


def test_auto_picks_the_einsum_on_cpu_and_kernels_on_accelerators():
    assert attn.resolve("auto") == "xla"  # this machine: the CPU
    assert attn.resolve("auto", platform="tpu") == "splash"
    assert attn.resolve("auto", platform="gpu", dtype=jnp.bfloat16) == "cudnn"
    assert attn.resolve("auto", platform="gpu", dtype=jnp.float32) == "dot_product_attention"
    assert attn.resolve("auto", platform="gpu", dtype=jnp.bfloat16, head_dim=36) == "dot_product_attention"
    assert attn.resolve("auto", platform="gpu", dtype=jnp.bfloat16, head_dim=256) == "dot_product_attention"
    with pytest.raises(ValueError, match="not one of"):
        attn.resolve("flash")
    with pytest.raises(ValueError, match="ModelConfig.attention='nope'"):
        ModelConfig(vocab_size=8, hidden_size=8, intermediate_size=8, num_layers=1, num_heads=2,
                    num_kv_heads=1, attention="nope")


CONFIG = ModelConfig(vocab_size=61, hidden_size=32, intermediate_size=48, num_layers=2, num_heads=4,
                     num_kv_heads=2, head_dim=8)


def _policy(backend: str) -> Transformer:
    return Transformer(CONFIG.replace(attention=backend), rngs=nnx.Rngs(4))  # same seed: same weights


def _prompts():
    rng = np.random.RandomState(5)
    mask = np.ones((3, 7), np.int32)
    mask[0, :4] = 0
    mask[2, :1] = 0
    return np.where(mask == 1, rng.randint(3, 61, mask.shape), 0).astype(np.int32), mask


@pytest.mark.parametrize("backend", ["dot_product_attention", "pallas_gpu", "splash"])
def test_model_logits_and_gradients_match_across_backends(backend):
    """The whole model (training forward + backward, as the update programs differentiate it)."""
    ids, mask = _prompts()
    real = mask.astype(bool)

    def loss(model):
        return jnp.sum(model(ids, attention_mask_bt=mask) * mask[..., None])

    ref, other = _policy("xla"), _policy(backend)
    np.testing.assert_allclose(np.asarray(other(ids, attention_mask_bt=mask))[real],
                               np.asarray(ref(ids, attention_mask_bt=mask))[real], rtol=0, atol=ATOL)
    grads_ref = jax.tree.leaves(nnx.grad(loss)(ref))
    grads = jax.tree.leaves(nnx.grad(loss)(other))
    for g, g_ref in zip(grads, grads_ref):
        np.testing.assert_allclose(np.asarray(g), np.asarray(g_ref), rtol=1e-4, atol=GRAD_ATOL)


def _checkpoint_params(model, ids, mask):
    """The ``prevent_cse`` of every ``jax.checkpoint`` in the model's forward."""
    def walk(jaxpr):
        for e in jaxpr.eqns:
            if e.primitive.name == "remat2":  # jax.checkpoint's primitive
                yield e.params["prevent_cse"]
            else:
                for sub in jax.extend.core.jaxprs_in_params(e.params):
                    yield from walk(sub)

    return list(walk(jax.make_jaxpr(lambda m: m(ids, attention_mask_bt=mask))(model).jaxpr))


@pytest.mark.parametrize("backend", ["xla", "dot_product_attention", "splash"])
def test_remat_keeps_the_cse_barriers_by_default_for_every_backend(backend):
    """Under remat every block keeps JAX's CSE barriers unless told otherwise: without them XLA
    merges the einsum's recomputation away (+1.11 GiB per layer of the 0.5B update on v5e), and at
    full depth the splash update is smaller with them too (7.19 vs 7.55 GiB at 4k tokens). Gradients
    stay those of the einsum without remat."""
    ids, mask = _prompts()
    real = mask.astype(bool)
    model = Transformer(CONFIG.replace(attention=backend, remat=True), rngs=nnx.Rngs(4))
    assert _checkpoint_params(model, ids, mask) == [True] * CONFIG.num_layers

    def loss(m):
        return jnp.sum(m(ids, attention_mask_bt=mask) * real[..., None])

    for g, g_ref in zip(jax.tree.leaves(nnx.grad(loss)(model)), jax.tree.leaves(nnx.grad(loss)(_policy("xla")))):
        np.testing.assert_allclose(np.asarray(g), np.asarray(g_ref), rtol=1e-4, atol=GRAD_ATOL)


@pytest.mark.parametrize("backend", ["xla", "splash"])
@pytest.mark.parametrize("barriers", [True, False])
def test_remat_barriers_setting_decides_for_every_block(backend, barriers):
    """``ModelConfig.remat_barriers`` decides for every block (a run may drop them where its
    memory plan says that is smaller); the gradients stay those of the einsum without remat
    either way."""
    ids, mask = _prompts()
    real = mask.astype(bool)
    model = Transformer(CONFIG.replace(attention=backend, remat=True, remat_barriers=barriers), rngs=nnx.Rngs(4))
    assert _checkpoint_params(model, ids, mask) == [barriers] * CONFIG.num_layers

    def loss(m):
        return jnp.sum(m(ids, attention_mask_bt=mask) * real[..., None])

    for g, g_ref in zip(jax.tree.leaves(nnx.grad(loss)(model)), jax.tree.leaves(nnx.grad(loss)(_policy("xla")))):
        np.testing.assert_allclose(np.asarray(g), np.asarray(g_ref), rtol=1e-4, atol=GRAD_ATOL)


def test_gpu_paged_decode_kernel_matches_the_gather_reference():
    """Pallas GPU paged attention (interpreted) over a pool with unused ("no block") table
    entries, rows of 6, 3 and 12 slots: within ATOL of gathering the blocks + einsum."""
    rng = np.random.RandomState(6)
    blocks, block_size, k, n, h = 7, 4, 2, 4, 8
    q = jnp.asarray(rng.randn(3, 1, n, h), jnp.float32)
    k_pool, v_pool = (jnp.asarray(rng.randn(k, blocks, block_size, h), jnp.float32) for _ in range(2))
    table = jnp.asarray([[2, 5, blocks], [0, blocks, blocks], [6, 1, 3]], jnp.int32)
    write_b = jnp.asarray([5, 2, 11], jnp.int32)
    mask = attn.AttentionMask(jnp.arange(3 * block_size)[None] <= write_b[:, None], write_b[:, None])
    ref = paged_attend(q, k_pool, v_pool, table, mask, backend="xla")
    out = paged_attend(q, k_pool, v_pool, table, mask, backend="pallas_gpu")
    np.testing.assert_allclose(np.asarray(out), np.asarray(ref), rtol=0, atol=ATOL)


@pytest.mark.parametrize("backend", ["xla", "pallas_gpu"])
def test_a_grouped_pool_split_over_the_mesh_reads_what_the_whole_pool_reads(backend):
    """Two groups of 4 blocks over a 2-shard mesh (each device holds its 2 rows and their blocks,
    "no block" entries included): every row's paged attention within ATOL of the whole pool's
    gather reference on one device."""
    rng = np.random.RandomState(7)
    blocks, block_size, k, n, h = 8, 4, 2, 4, 8
    q = jnp.asarray(rng.randn(4, 1, n, h), jnp.float32)
    k_pool, v_pool = (jnp.asarray(rng.randn(k, blocks, block_size, h), jnp.float32) for _ in range(2))
    table = jnp.asarray([[2, 0, blocks], [3, blocks, blocks], [7, 4, 5], [6, blocks, blocks]], jnp.int32)
    write_b = jnp.asarray([5, 2, 11, 3], jnp.int32)
    mask = attn.AttentionMask(jnp.arange(3 * block_size)[None] <= write_b[:, None], write_b[:, None])
    ref = paged_attend(q, k_pool, v_pool, table, mask, backend="xla")
    mesh = sharding.make_mesh(sharding.MeshConfig(data=2, fsdp=1, tensor=1), devices=jax.devices()[:2])
    rows, pools = (sharding.named_sharding(mesh, axes) for axes in (("batch",), (None, "batch")))
    put = jax.device_put
    with jax.set_mesh(mesh):
        out = jax.jit(lambda *a: paged_attend(*a, backend=backend, groups=2))(
            put(q, rows), put(k_pool, pools), put(v_pool, pools), put(table, rows), put(mask, rows))
    np.testing.assert_allclose(np.asarray(out), np.asarray(ref), rtol=0, atol=ATOL)


@pytest.mark.parametrize("backend", ["dot_product_attention", "splash", "pallas_gpu"])
@pytest.mark.parametrize("slots", [0, 2])
def test_greedy_rollouts_identical_across_backends(backend, slots):
    """float32 greedy decoding: the same tokens with every backend (static batch with a kernel
    prefill; the paged slot pool, whose decode steps run pallas_gpu's paged kernel), log-probs
    within ATOL."""
    ids, mask = _prompts()
    config = SamplingConfig(max_new_tokens=8, temperature=0.0, decode_slots=slots, kv_blocks=6 if slots else 0,
                            kv_block_size=4)
    ref = sample(_policy("xla"), ids, mask, key=jax.random.key(0), config=config)
    out = sample(_policy(backend), ids, mask, key=jax.random.key(0), config=config)
    np.testing.assert_array_equal(np.asarray(out.tokens), np.asarray(ref.tokens))
    np.testing.assert_allclose(np.asarray(out.logprobs), np.asarray(ref.logprobs), rtol=0, atol=ATOL)
