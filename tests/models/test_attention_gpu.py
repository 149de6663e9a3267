"""The GPU kernels lower and compile for NVIDIA GPUs on this CPU (the CUDA plugin of the test extra
compiles for an H100 or an A100 that ``prime_jax.topologies`` describes; no GPU, no driver), so a
change that stops them compiling fails here: cuDNN flash attention and Pallas (Triton) flash
attention forward + backward (GQA, the 0.5B and 7B heads, rows split over two GPUs), the
shapes cuDNN refuses (odd lengths, wide heads) handled, the Pallas paged decode kernel, and a
model's training step and paged decode step with ``attention="auto"`` (cuDNN on a GPU)."""

import re

import jax
import jax.numpy as jnp
import pytest
from _aot_helpers import compiled_text, model_steps, paged_decode, spec

pytest.importorskip("jax_cuda12_plugin", reason="the CUDA plugin (test extra) compiles for a GPU without one")

from prime_jax import sharding, topologies  # noqa: E402
from prime_jax.models import ModelConfig  # noqa: E402
from prime_jax.models import attention as attn  # noqa: E402

CUDNN = ("__cudnn$fmhaScaleBiasSoftmax", "__cudnn$fmhaScaleBiasSoftmaxBackward")
TRITON = "__gpu$xla.gpu.triton"


@pytest.fixture(scope="module", params=["h100:2", "a100:2"])
def mesh(request):
    return sharding.make_mesh(sharding.MeshConfig(data=2, fsdp=1, tensor=1), topologies.devices(request.param))


def _custom_calls(mesh, fn, *args) -> set[str]:
    """The custom-call targets of ``fn`` compiled for ``mesh``'s GPUs."""
    return set(re.findall(r'custom_call_target="([^"]+)"', compiled_text(mesh, fn, *args)))


def _attention_grad_calls(mesh, backend, b, t, n, k, h):
    def loss(q, kk, v, mask_bt):
        out = attn.attend(q, kk, v, attn.AttentionMask.causal(mask_bt), backend=backend)
        return jnp.sum(out.astype(jnp.float32) ** 2)

    args = (spec(mesh, (b, t, n, h), ("batch", "length", "heads", "head_dim")),
            spec(mesh, (b, k, t, h), ("batch", "kv_heads", "length", "head_dim")),
            spec(mesh, (b, k, t, h), ("batch", "kv_heads", "length", "head_dim")),
            spec(mesh, (b, t), ("batch", "length"), jnp.bool_))
    return _custom_calls(mesh, jax.grad(loss, argnums=(0, 1, 2)), *args)


@pytest.mark.parametrize("n, k, h", [(14, 2, 64), (28, 4, 128)])  # the 0.5B and 7B heads
@pytest.mark.parametrize("backend, expected", [("cudnn", CUDNN), ("pallas_gpu", (TRITON,))])
def test_flash_attention_forward_and_backward_compile_for_gpu(mesh, backend, expected, n, k, h):
    calls = _attention_grad_calls(mesh, backend, 4, 512, n, k, h)
    assert set(expected) <= calls, calls


def test_cudnn_takes_an_odd_length():
    """cuDNN's backward pass with a bias refuses an odd T (JAX raises NotImplementedError):
    ``cudnn_attention`` pads it by one slot, so a 37-token gradient compiles with cuDNN's kernels."""
    mesh = sharding.make_mesh(sharding.MeshConfig(data=1, fsdp=1, tensor=1), topologies.devices("h100:1"))
    assert set(CUDNN) <= _attention_grad_calls(mesh, "cudnn", 2, 37, 14, 2, 64)


@pytest.mark.parametrize("h", [36, 256])
def test_auto_leaves_cudnn_for_head_dims_it_refuses(mesh, h):
    """A head dim that is no multiple of 8 or above 128 (what JAX's cuDNN check allows without a
    Hopper attached): ``auto`` takes XLA's fused attention instead, and the step still compiles."""
    assert attn.resolve("auto", platform="gpu", dtype=jnp.bfloat16, head_dim=h) == "dot_product_attention"
    calls = _attention_grad_calls(mesh, "auto", 2, 64, 4, 2, h)
    assert not calls & set(CUDNN), calls


@pytest.mark.parametrize("h, kernel", [(64, True), (128, True), (80, False)])
def test_paged_decode_kernel_compiles_for_gpu(mesh, h, kernel):
    """Power-of-two head dims take the Pallas paged kernel (Triton); an 80-wide head, which
    Triton's lowering refuses, keeps the gather path."""
    step, args = paged_decode(28, 4, h)
    calls = _custom_calls(mesh, step, *args)
    assert (TRITON in calls) == kernel, calls


def test_paged_decode_kernel_reads_a_grouped_pool_where_it_lies(mesh):
    """A pool in 2 groups over the 2 GPUs' batch shards: the kernel runs per GPU on its own
    blocks, and the whole (4, 64, 16, 128) pool is never assembled on a GPU."""
    step, args = paged_decode(28, 4, 128, mesh, groups=2)
    text = compiled_text(mesh, step, *args)
    assert TRITON in text and "bf16[4,32,16,128]" in text and "bf16[4,64,16,128]" not in text


CONFIG = ModelConfig(vocab_size=256, hidden_size=256, intermediate_size=256, num_layers=2, num_heads=4,
                     num_kv_heads=2, head_dim=64, dtype="bfloat16", param_dtype="bfloat16")


@pytest.mark.parametrize("remat", [False, True])
def test_model_training_step_and_paged_decode_compile_with_auto_attention(mesh, remat):
    """An odd length (255) takes cuDNN's padded path."""
    (train, train_args), (decode, decode_args) = model_steps(CONFIG.replace(remat=remat), mesh, 255)
    assert set(CUDNN) <= _custom_calls(mesh, train, *train_args)
    if not remat:
        assert TRITON in _custom_calls(mesh, decode, *decode_args)
