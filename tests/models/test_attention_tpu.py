"""The TPU kernels lower and compile for a TPU topology on this CPU (libtpu describes v5e:2x2), so a
change that stops them lowering fails here: splash attention forward + backward (GQA, head_dim 64
padded to 128, rows and heads split over a mesh), the paged decode kernel, and a model's training
step and paged decode step with ``attention="auto"`` (which is splash on a TPU)."""

import jax
import jax.numpy as jnp
import pytest
from _aot_helpers import compiled_text, model_steps, paged_decode, spec

pytest.importorskip("libtpu", reason="libtpu (the test extra) describes the TPU topology")

from prime_jax import sharding, topologies  # noqa: E402 - topologies quiets libtpu first
from prime_jax.models import ModelConfig  # noqa: E402
from prime_jax.models import attention as attn  # noqa: E402


@pytest.fixture(scope="module")
def mesh():
    devices = topologies.devices("v5e:2x2")
    return sharding.make_mesh(sharding.MeshConfig(data=2, fsdp=1, tensor=2), devices)


def test_splash_forward_and_backward_compile_for_tpu(mesh):
    b, t, n, k, h = 4, 512, 14, 2, 64  # the 0.5B model's heads

    def loss(q, kk, v, mask_bt):
        out = attn.attend(q, kk, v, attn.AttentionMask.causal(mask_bt), backend="splash")
        return jnp.sum(out.astype(jnp.float32) ** 2)

    args = (spec(mesh, (b, t, n, h), ("batch", "length", "heads", "head_dim")),
            spec(mesh, (b, k, t, h), ("batch", "kv_heads", "length", "head_dim")),
            spec(mesh, (b, k, t, h), ("batch", "kv_heads", "length", "head_dim")),
            spec(mesh, (b, t), ("batch", "length"), jnp.bool_))
    text = compiled_text(mesh, jax.grad(loss, argnums=(0, 1, 2)), *args)
    assert text.count("tpu_custom_call") >= 2, "splash forward and backward kernels expected"


@pytest.mark.parametrize("n, k, h, kernel", [(28, 4, 128, True), (14, 2, 64, False)])
def test_paged_decode_kernel_compiles_for_tpu(mesh, n, k, h, kernel):
    """The 7B heads (28 over 4, head_dim 128) take the paged kernel; the 0.5B heads (head_dim 64,
    under the kernel's 128-lane tile) keep the gather path."""
    step, args = paged_decode(n, k, h)
    text = compiled_text(mesh, step, *args)
    assert ("tpu_custom_call" in text) == kernel


def test_paged_decode_kernel_reads_a_grouped_pool_where_it_lies():
    """A pool in 2 groups over the slice's 2 batch shards: the kernel runs per shard on its own
    blocks, and the whole (4, 64, 16, 128) pool is never assembled on a chip."""
    mesh = sharding.make_mesh(sharding.MeshConfig(data=2, fsdp=1, tensor=1), topologies.devices("v5e:2x2")[:2])
    step, args = paged_decode(28, 4, 128, mesh, groups=2)
    text = compiled_text(mesh, step, *args)
    assert "tpu_custom_call" in text and "bf16[4,32,16,128]" in text and "bf16[4,64,16,128]" not in text


CONFIG = ModelConfig(vocab_size=256, hidden_size=256, intermediate_size=256, num_layers=2, num_heads=4,
                     num_kv_heads=2, head_dim=128, dtype="bfloat16", param_dtype="bfloat16")


@pytest.mark.parametrize("remat", [False, True])
def test_model_training_step_and_paged_decode_compile_with_auto_attention(mesh, remat):
    """With ``remat`` the blocks are checkpointed without CSE barriers around splash."""
    (train, train_args), (decode, decode_args) = model_steps(CONFIG.replace(remat=remat), mesh, 256)
    assert "tpu_custom_call" in compiled_text(mesh, train, *train_args)
    if not remat:
        assert "tpu_custom_call" in compiled_text(mesh, decode, *decode_args)
