"""Building blocks of the decoder: RMSNorm, RoPE, the attention layer, SwiGLU MLP.

Weights carry *logical* axis names (``nnx.Param(..., out_sharding=("embed", "mlp"))``) that
``prime_jax.sharding.PARAM_RULES`` maps to mesh axes. ``param`` drops a name whose mesh axes do
not divide that dimension (e.g. 2 kv heads on a tensor axis of 4): that dimension is replicated
instead of failing, by the same rule ``sharding.logical_to_spec`` applies to activations.

Array names carry shape suffixes: b batch, t query position, s key slot, d model width,
n query heads, k kv heads, g query heads per kv head, h head dim, f mlp width.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from flax.linen import get_logical_axis_rules  # public accessor of the rules nnx.logical_axis_rules sets

from prime_jax import sharding
from prime_jax.models.cache import KVLayer
from prime_jax.models.config import ModelConfig, RopeScaling

def param_axes(shape: Sequence[int], logical_axes: Sequence[str | None]) -> tuple:
    """``logical_axes`` with each name whose mesh axes do not divide its dim replaced by None."""
    mesh = jax.sharding.get_abstract_mesh()
    if mesh.empty:
        return tuple(logical_axes)
    rules = get_logical_axis_rules() or sharding.PARAM_RULES
    table = dict(rules)
    spec = sharding.logical_to_spec(logical_axes, rules, shape, mesh)
    return tuple(name if (name is None or table.get(name) is None or spec[i] is not None
                          or all(mesh.shape[a] == 1 for a in _as_tuple(table[name])))
                 else None for i, name in enumerate(logical_axes))


def param_shardings(tree, mesh: jax.sharding.Mesh):
    """``NamedSharding`` for every Param of ``tree`` (a module or an ``nnx.State``).

    Read from each Param's logical ``out_sharding`` under ``PARAM_RULES``, dropping mesh axes that
    do not divide their dim, so it is valid even for a model built without (or on another) mesh.
    The result has the structure of ``nnx.state(tree, nnx.Param)``: feed it to ``jax.device_put``.
    """
    state = tree if isinstance(tree, nnx.State) else nnx.state(tree, nnx.Param)

    def one(v: nnx.Variable):
        names = v.get_metadata().get("out_sharding") or (None,) * len(v.shape)
        spec = sharding.logical_to_spec(names, sharding.PARAM_RULES, v.shape, mesh)
        return v.replace(jax.sharding.NamedSharding(mesh, spec))

    return jax.tree.map(one, state, is_leaf=lambda x: isinstance(x, nnx.Variable))


def _as_tuple(axes) -> tuple:
    return (axes,) if isinstance(axes, str) else tuple(axes)


def make_param(rngs: nnx.Rngs | None, shape: Sequence[int], logical_axes: Sequence[str | None],
               dtype, init: str = "normal", stddev: float = 0.02) -> nnx.Param:
    """An ``nnx.Param`` of ``shape`` initialised as ``init`` (normal(0, stddev) | ones | zeros)."""
    shape = tuple(shape)
    if init == "normal":
        value = stddev * jax.random.normal(rngs.params(), shape, jnp.float32)
    elif init == "ones":
        value = jnp.ones(shape, jnp.float32)
    else:
        value = jnp.zeros(shape, jnp.float32)
    # Without a mesh the names are kept as metadata only (nothing to shard over).
    eager = not jax.sharding.get_abstract_mesh().empty
    return nnx.Param(value.astype(dtype), out_sharding=param_axes(shape, logical_axes),
                     eager_sharding=eager)


class RMSNorm(nnx.Module):
    """``y = w * x / sqrt(mean(x^2, -1) + eps)``; statistics in float32, scale in compute dtype."""

    def __init__(self, dim: int, *, eps: float, dtype, param_dtype):
        self.eps, self.dtype = eps, dtype
        self.weight = make_param(None, (dim,), ("norm",), param_dtype, init="ones")

    def __call__(self, x: jax.Array) -> jax.Array:
        x32 = x.astype(jnp.float32)
        y = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + self.eps)
        return self.weight[...].astype(self.dtype) * y.astype(self.dtype)


def rope_inv_freq(head_dim: int, theta: float, scaling: RopeScaling | None = None) -> np.ndarray:
    """Inverse frequencies ``1 / theta^(2i/h)``, i < h/2 (float32), with optional llama3 scaling.

    llama3: with wavelength ``w = 2 pi / f``, ``L = original_max_position_embeddings``:
    ``f' = f`` if ``w < L / high_freq_factor``; ``f' = f / factor`` if ``w > L / low_freq_factor``;
    otherwise ``f' = (1 - a) f / factor + a f`` with
    ``a = (L / w - low_freq_factor) / (high_freq_factor - low_freq_factor)``.
    """
    exponent = np.arange(0, head_dim, 2, dtype=np.int64).astype(np.float32) / np.float32(head_dim)
    inv_freq = (np.float32(1.0) / (np.float32(theta) ** exponent)).astype(np.float32)
    if scaling is None:
        return inv_freq
    factor = np.float32(scaling.factor)
    low, high = np.float32(scaling.low_freq_factor), np.float32(scaling.high_freq_factor)
    old_len = np.float32(scaling.original_max_position_embeddings)
    wavelen = np.float32(2 * np.pi) / inv_freq
    scaled = np.where(wavelen > old_len / low, inv_freq / factor, inv_freq)
    smooth = (old_len / wavelen - low) / (high - low)
    smoothed = (1 - smooth) * scaled / factor + smooth * scaled
    medium = (wavelen >= old_len / high) & (wavelen <= old_len / low)
    return np.where(medium, smoothed, scaled).astype(np.float32)


def apply_rope(x_btnh: jax.Array, positions_bt: jax.Array, inv_freq_j: np.ndarray) -> jax.Array:
    """Rotate halves: ``[x1, x2] -> [x1 cos - x2 sin, x2 cos + x1 sin]``, angle = pos * inv_freq.

    Angles and rotation in float32; the result is cast back to ``x``'s dtype.
    """
    angles_btj = positions_bt.astype(jnp.float32)[..., None] * jnp.asarray(inv_freq_j)
    cos_bt1j = jnp.cos(angles_btj)[:, :, None, :]
    sin_bt1j = jnp.sin(angles_btj)[:, :, None, :]
    x1, x2 = jnp.split(x_btnh.astype(jnp.float32), 2, axis=-1)
    out = jnp.concatenate([x1 * cos_bt1j - x2 * sin_bt1j, x2 * cos_bt1j + x1 * sin_bt1j], -1)
    return out.astype(x_btnh.dtype)


class Attention(nnx.Module):
    """Self-attention with GQA, RoPE, optional q/k/v bias (Qwen2) and q/k RMSNorm (Qwen3)."""

    def __init__(self, config: ModelConfig, *, rngs: nnx.Rngs):
        d, n, k, h = config.hidden_size, config.num_heads, config.num_kv_heads, config.head_dim
        pdt, self.dtype = config.weight_dtype, config.compute_dtype
        self.q_proj = make_param(rngs, (d, n, h), ("embed", "heads", "head_dim"), pdt)
        self.k_proj = make_param(rngs, (d, k, h), ("embed", "kv_heads", "head_dim"), pdt)
        self.v_proj = make_param(rngs, (d, k, h), ("embed", "kv_heads", "head_dim"), pdt)
        self.o_proj = make_param(rngs, (n, h, d), ("heads", "head_dim", "embed"), pdt)
        if config.qkv_bias:
            self.q_bias = make_param(None, (n, h), ("heads", "head_dim"), pdt, init="zeros")
            self.k_bias = make_param(None, (k, h), ("kv_heads", "head_dim"), pdt, init="zeros")
            self.v_bias = make_param(None, (k, h), ("kv_heads", "head_dim"), pdt, init="zeros")
        if config.qk_norm:
            norm = dict(eps=config.rms_norm_eps, dtype=self.dtype, param_dtype=pdt)
            self.q_norm = RMSNorm(h, **norm)
            self.k_norm = RMSNorm(h, **norm)
        self.qkv_bias, self.qk_norm = config.qkv_bias, config.qk_norm
        self.rope = (h, float(config.rope_theta), config.rope_scaling)  # static, hashable
        self.attention = config.attention

    def _project(self, x_btd, name: str) -> jax.Array:
        w = getattr(self, f"{name}_proj")[...].astype(self.dtype)
        y = jnp.einsum("btd,dkh->btkh", x_btd, w)
        if self.qkv_bias:
            y = y + getattr(self, f"{name}_bias")[...].astype(self.dtype)
        return y

    def __call__(self, x_btd: jax.Array, positions_bt: jax.Array, kv: KVLayer):
        """Returns (output_btd, what ``kv`` wrote): the cache layout ``kv`` (``models.cache``)
        stores this call's keys / values and runs the attention with ``config.attention``."""
        h, theta, scaling = self.rope
        inv_freq = rope_inv_freq(h, theta, scaling)
        q_btnh = self._project(x_btd, "q")
        k_btkh, v_btkh = self._project(x_btd, "k"), self._project(x_btd, "v")
        if self.qk_norm:
            q_btnh, k_btkh = self.q_norm(q_btnh), self.k_norm(k_btkh)
        q_btnh = sharding.constrain(apply_rope(q_btnh, positions_bt, inv_freq),
                                    ("batch", "length", "heads", "head_dim"))
        k_bkth = apply_rope(k_btkh, positions_bt, inv_freq).transpose(0, 2, 1, 3)
        v_bkth = v_btkh.transpose(0, 2, 1, 3)
        out_btnh, written = kv.attend(q_btnh, k_bkth, v_bkth, backend=self.attention)
        # o_proj is stored (n, h, d): flatten the output as (b, t, n h) and do one plain matmul
        # with the weight as stored (for t = 1 a free reshape), so XLA never re-lays out the
        # weight inside the decode loop.
        b, t, n, _ = out_btnh.shape
        out_btf = sharding.constrain(out_btnh.reshape(b, t, n * h), ("batch", "length", "heads"))
        out_btd = out_btf @ self.o_proj[...].astype(self.dtype).reshape(n * h, -1)
        return sharding.constrain(out_btd, ("batch", "length", "embed")), written


class MLP(nnx.Module):
    """SwiGLU: ``down(silu(x gate) * (x up))``."""

    def __init__(self, config: ModelConfig, *, rngs: nnx.Rngs):
        d, f, pdt = config.hidden_size, config.intermediate_size, config.weight_dtype
        self.dtype = config.compute_dtype
        self.gate_proj = make_param(rngs, (d, f), ("embed", "mlp"), pdt)
        self.up_proj = make_param(rngs, (d, f), ("embed", "mlp"), pdt)
        self.down_proj = make_param(rngs, (f, d), ("mlp", "embed"), pdt)

    def __call__(self, x_btd: jax.Array) -> jax.Array:
        gate_btf = x_btd @ self.gate_proj[...].astype(self.dtype)
        up_btf = x_btd @ self.up_proj[...].astype(self.dtype)
        h_btf = sharding.constrain(jax.nn.silu(gate_btf) * up_btf, ("batch", "length", "mlp"))
        out_btd = h_btf @ self.down_proj[...].astype(self.dtype)
        return sharding.constrain(out_btd, ("batch", "length", "embed"))
