"""Attention backends: ``attend(q_btnh, k_bksh, v_bksh, mask, backend=...) -> out_btnh``.

Every backend computes grouped-query attention ``out = softmax(q k^T / sqrt(h) + mask) v`` with
softmax statistics in float32; query head ``n = k * g + j`` reads kv head ``k`` (g = n / k).
Keys and values come in the cache layout ``(B, kv_heads, S, head_dim)``. The mask
(``AttentionMask``) lets query t of row b read key slot s iff ``s <= last_slot_bt[b, t]`` and
``kv_mask_bs[b, s]`` (causal + padding, every caller's mask has this form). Backends
(``ModelConfig.attention``):

* ``xla``: the reference, two einsums over the materialised (T, S) float32 scores;
* ``dot_product_attention``: ``jax.nn.dot_product_attention`` (XLA's fused implementation);
* ``cudnn``: the same call with ``implementation="cudnn"`` (NVIDIA GPUs, 16-bit inputs);
* ``pallas_gpu``: Pallas (Triton) flash attention, ``pallas.ops.gpu.attention.mha``;
* ``splash``: Pallas TPU splash attention (``pallas.ops.tpu.splash_attention``);
* ``auto``: ``splash`` on TPU, ``cudnn`` on GPU for 16-bit compute and a head dim cuDNN's flash
  attention takes (a multiple of 8, at most 128; else ``dot_product_attention``), ``xla`` on CPU,
  where the einsum is fastest.

The fused kernels (``cudnn``, ``splash``, ``pallas_gpu``) serve self-attention over the call's own
tokens (training forwards, log-prob passes, prefill at cache index 0: ``mask.self_attention``);
``cudnn`` takes the mask as a (B, 1, T, T) bias, and its backward pass needs an even T with a
bias: an odd T gets one masked key slot and one discarded query appended. For ``splash`` and
``pallas_gpu`` padding becomes segment ids (real tokens 1, padding 0), so a real query reads
exactly the reference's keys, while a padding query reads padding keys instead of the
reference's uniform average (its output is never read: no real query reads a padding key, losses
mask padding positions). Other
calls (decode steps over a dense cache: one query, bandwidth-bound) take the reference einsum;
paged decode has its own kernels (``attention_paged``). Kernels that need a lane-sized head dim
get q, k, v zero-padded to it (``pad_head_dim``), which changes no score and no output. On the
CPU the Pallas kernels run in interpret mode (tests; slow); ``auto`` never picks them there.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from prime_jax import sharding
from prime_jax.models.config import ATTENTION_BACKENDS as BACKENDS

_NEG_INF = float(np.finfo(np.float32).min)
_Q_AXES, _KV_AXES = ("batch", "length", "heads", "head_dim"), ("batch", "kv_heads", "length", "head_dim")


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class AttentionMask:
    """Who reads whom: query t of row b reads slot s iff ``s <= last_slot_bt[b, t]`` and
    ``kv_mask_bs[b, s]``. ``self_attention`` (static): the keys are the call's own T tokens in
    order (S == T, ``last_slot_bt[b, t] == t``), the case the flash kernels serve."""

    kv_mask_bs: jax.Array
    last_slot_bt: jax.Array
    self_attention: bool = dataclasses.field(default=False, metadata=dict(static=True))

    @classmethod
    def causal(cls, mask_bt: jax.Array) -> AttentionMask:
        """Self-attention over T tokens with padding ``mask_bt``: ``s <= t`` and ``mask_bt[b, s]``."""
        b, t = mask_bt.shape
        return cls(mask_bt, jnp.broadcast_to(jnp.arange(t, dtype=jnp.int32), (b, t)), True)

    def dense_bts(self) -> jax.Array:
        """The (B, T, S) boolean mask."""
        s = self.kv_mask_bs.shape[1]
        return (jnp.arange(s)[None, None, :] <= self.last_slot_bt[:, :, None]) & self.kv_mask_bs[:, None, :]


def target_platform() -> str:
    """The platform being compiled for: the current mesh's devices (also an ahead-of-time compile
    for a TPU topology on a CPU host), else JAX's default backend."""
    device = jax.sharding.get_abstract_mesh().abstract_device
    return device.platform if device is not None else jax.default_backend()


def resolve(backend: str, platform: str | None = None, dtype=jnp.float32, head_dim: int = 128) -> str:
    """The concrete backend ``auto`` means on ``platform`` (default: ``target_platform()``) for
    ``dtype`` inputs of ``head_dim``. cuDNN's flash attention takes 16-bit inputs with a head dim
    that is a multiple of 8 and at most 128 (256 on Hopper; JAX checks the attached GPU, so an
    ahead-of-time compile on a host without one allows 128)."""
    if backend not in BACKENDS:
        raise ValueError(f"attention backend {backend!r} is not one of {BACKENDS}")
    if backend != "auto":
        return backend
    platform = platform or target_platform()
    if platform == "tpu":
        return "splash"
    if platform in ("gpu", "cuda", "rocm"):
        cudnn = jnp.dtype(dtype).itemsize == 2 and head_dim % 8 == 0 and head_dim <= 128
        return "cudnn" if cudnn and platform != "rocm" else "dot_product_attention"
    return "xla"


def einsum_attention(q_btnh, k_bksh, v_bksh, mask: AttentionMask) -> jax.Array:
    """The reference: both einsums keep (b, k) as leading batch dims (no transpose of the cache);
    a fully masked query row yields a uniform average (finite)."""
    b, t, n, h = q_btnh.shape
    k = k_bksh.shape[1]
    q_btkgh = q_btnh.reshape(b, t, k, n // k, h)
    scores_bkgts = jnp.einsum("btkgh,bksh->bkgts", q_btkgh, k_bksh,
                              preferred_element_type=jnp.float32) * (h ** -0.5)
    scores_bkgts = jnp.where(mask.dense_bts()[:, None, None, :, :], scores_bkgts, _NEG_INF)
    probs_bkgts = jax.nn.softmax(scores_bkgts, axis=-1).astype(v_bksh.dtype)
    out_bkgth = jnp.einsum("bkgts,bksh->bkgth", probs_bkgts, v_bksh)
    return out_bkgth.transpose(0, 3, 1, 2, 4).reshape(b, t, n, h)


def fused_attention(q_btnh, k_bksh, v_bksh, mask: AttentionMask, implementation: str = "xla"):
    """``jax.nn.dot_product_attention`` with the (B, 1, T, S) boolean mask (GQA native)."""
    k_bskh, v_bskh = k_bksh.transpose(0, 2, 1, 3), v_bksh.transpose(0, 2, 1, 3)
    return jax.nn.dot_product_attention(q_btnh, k_bskh, v_bskh, mask=mask.dense_bts()[:, None],
                                        implementation=implementation)


def pad_head_dim(x, multiple: int):
    """``x`` with its last (head) dim zero-padded up to a multiple of ``multiple``: padded q and k
    add ``0 * 0`` to every score, padded v gives zero output columns (sliced off after)."""
    h = x.shape[-1]
    extra = -h % multiple
    return x if not extra else jnp.pad(x, [(0, 0)] * (x.ndim - 1) + [(0, extra)])


def _pad_length(x, axis: int, multiple: int):
    extra = -x.shape[axis] % multiple
    return x if not extra else jnp.pad(x, [(0, extra if a == axis else 0) for a in range(x.ndim)])


def cudnn_attention(q_btnh, k_bksh, v_bksh, mask: AttentionMask):
    """``fused_attention`` through cuDNN. With a bias, cuDNN's backward pass refuses an odd T or S
    (JAX raises NotImplementedError), so an odd self-attention length is padded by one: a key slot
    nobody reads (``kv_mask`` False) and a query whose output is sliced off."""
    t = q_btnh.shape[1]
    if mask.self_attention and t % 2:
        padded = AttentionMask.causal(_pad_length(mask.kv_mask_bs, 1, 2))
        out = fused_attention(_pad_length(q_btnh, 1, 2), _pad_length(k_bksh, 2, 2), _pad_length(v_bksh, 2, 2),
                              padded, "cudnn")
        return out[:, :t]
    return fused_attention(q_btnh, k_bksh, v_bksh, mask, "cudnn")


def pallas_gpu_attention(q_btnh, k_bksh, v_bksh, mask: AttentionMask, *, interpret: bool = False,
                         block: int = 64):
    """Pallas (Triton) flash attention, causal with padding as segment ids. The kernel wants
    equal q / kv heads (kv heads repeated g times), T a multiple of ``block`` and a head dim of
    at least 16 (both padded here)."""
    from jax.experimental.pallas.ops.gpu import attention as gpu_attention

    b, t, n, h = q_btnh.shape
    g = n // k_bksh.shape[1]
    step = min(block, max(16, 1 << (t - 1).bit_length()))
    q = pad_head_dim(_pad_length(q_btnh, 1, step), 16)
    k, v = (pad_head_dim(_pad_length(jnp.repeat(x, g, axis=1).transpose(0, 2, 1, 3), 1, step), 16)
            for x in (k_bksh, v_bksh))
    segments_bt = _pad_length(mask.kv_mask_bs.astype(jnp.int32), 1, step)
    sizes = gpu_attention.BlockSizes(block_q=step, block_k=step, block_q_dkv=step, block_kv_dkv=step,
                                     block_q_dq=step, block_kv_dq=step)
    out = gpu_attention.mha(q, k, v, segments_bt, sm_scale=h ** -0.5, causal=True, block_sizes=sizes,
                            interpret=interpret)
    return out[:, :t, :, :h]


def _splash_kernel(heads: int, length: int, block: int, interpret: bool):
    """A splash kernel for causal self-attention. Built anew in each trace, never cached: it holds
    its mask tables as arrays, which a kernel built under one trace would leak into the next."""
    from jax.experimental.pallas.ops.tpu.splash_attention import splash_attention_kernel as splash
    from jax.experimental.pallas.ops.tpu.splash_attention import splash_attention_mask as masks

    causal = masks.MultiHeadMask([masks.CausalMask((length, length)) for _ in range(heads)])
    sizes = splash.BlockSizes(block_q=block, block_kv=block, block_kv_compute=block, block_q_dkv=block,
                              block_kv_dkv=block, block_kv_dkv_compute=block, block_q_dq=block,
                              block_kv_dq=block)
    return splash.make_splash_mha(causal, block_sizes=sizes, head_shards=1, q_seq_shards=1,
                                  interpret=interpret)


def splash_attention(q_btnh, k_bksh, v_bksh, mask: AttentionMask, *, interpret: bool = False):
    """Pallas TPU splash attention per row (GQA native), causal with padding as segment ids.
    T is padded to a multiple of 128 (the kernel's lane width) and the head dim to 128."""
    from jax.experimental.pallas.ops.tpu.splash_attention import splash_attention_kernel as splash

    b, t, n, h = q_btnh.shape
    block = min(512, 128 * -(-t // 128))
    q_bnth = pad_head_dim(_pad_length(q_btnh, 1, block), 128).transpose(0, 2, 1, 3) * (h ** -0.5)
    k_bksh, v_bksh = (pad_head_dim(_pad_length(x, 2, block), 128) for x in (k_bksh, v_bksh))
    segments_bt = _pad_length(mask.kv_mask_bs.astype(jnp.int32), 1, block)
    kernel = _splash_kernel(n, q_bnth.shape[2], block, interpret)

    def one(q_nth, k_ksh, v_ksh, seg_t):
        return kernel(q_nth, k_ksh, v_ksh, splash.SegmentIds(q=seg_t, kv=seg_t))

    out_bnth = jax.vmap(one)(q_bnth.astype(k_bksh.dtype), k_bksh, v_bksh, segments_bt)
    return out_bnth.transpose(0, 2, 1, 3)[:, :t, :, :h].astype(q_btnh.dtype)


_KERNELS = {"splash": (splash_attention, "tpu"), "pallas_gpu": (pallas_gpu_attention, "gpu")}


def kernel_for(backend: str):
    """The Pallas kernel of ``backend`` for the target platform: compiled on its own platform,
    interpreted on the CPU (tests; slow), refused elsewhere."""
    kernel, home = _KERNELS[backend]
    platform = target_platform()
    platform = "gpu" if platform in ("cuda", "rocm") else platform
    if platform == "cpu":
        return functools.partial(kernel, interpret=True)
    if platform != home:
        raise ValueError(f"ModelConfig.attention={backend!r} runs on {home} (or interpreted on cpu), "
                         f"not on {platform}; use 'auto'")
    return kernel


def _sharded(kernel, q_btnh, k_bksh, v_bksh, mask: AttentionMask):
    """``kernel`` per shard of the current mesh (rows over the batch axes, heads over ``tensor``
    when both head counts divide it): a Pallas call is opaque to XLA's partitioner."""
    mesh = jax.sharding.get_abstract_mesh()
    if mesh.empty or mesh.size == 1:
        return kernel(q_btnh, k_bksh, v_bksh, mask)
    spec = functools.partial(sharding.logical_to_spec, mesh=mesh)
    q_spec, kv_spec = spec(_Q_AXES, shape=q_btnh.shape), spec(_KV_AXES, shape=k_bksh.shape)
    if q_spec[2] != kv_spec[1]:  # heads split differently: split rows only
        q_spec = jax.sharding.PartitionSpec(q_spec[0], None, None, None)
        kv_spec = jax.sharding.PartitionSpec(kv_spec[0], None, None, None)
    rows = jax.sharding.PartitionSpec(q_spec[0], None)
    mask_spec = AttentionMask(rows, rows, mask.self_attention)
    return jax.shard_map(kernel, mesh=mesh, in_specs=(q_spec, kv_spec, kv_spec, mask_spec),
                         out_specs=q_spec, check_vma=False)(q_btnh, k_bksh, v_bksh, mask)


def attend(q_btnh, k_bksh, v_bksh, mask: AttentionMask, *, backend: str = "xla") -> jax.Array:
    """Grouped-query attention (module docstring) with ``backend``; returns ``out_btnh``."""
    backend = resolve(backend, dtype=q_btnh.dtype, head_dim=q_btnh.shape[-1])
    if backend == "cudnn" and target_platform() == "cpu":
        raise ValueError("ModelConfig.attention='cudnn' needs an NVIDIA GPU; use 'auto'")
    if backend == "xla" or (backend != "dot_product_attention" and not mask.self_attention):
        return einsum_attention(q_btnh, k_bksh, v_bksh, mask)
    if backend in _KERNELS:
        return _sharded(kernel_for(backend), q_btnh, k_bksh, v_bksh, mask)
    if backend == "cudnn":
        return cudnn_attention(q_btnh, k_bksh, v_bksh, mask)
    return fused_attention(q_btnh, k_bksh, v_bksh, mask)
