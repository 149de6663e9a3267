"""Where the initial (SFT) weights of a run come from: a local HF directory or a fresh init."""

from __future__ import annotations

import dataclasses

import jax
from flax import nnx

from prime_jax import sharding
from prime_jax.models import ModelConfig, Transformer, from_pretrained


@dataclasses.dataclass(frozen=True, kw_only=True)
class ModelSource:
    """``hf_path``: load a local Hugging Face directory; else initialise ``config`` randomly.

    ``dtype``/``param_dtype`` override the loaded model's compute/storage dtypes.
    """

    hf_path: str | None = None
    config: ModelConfig | None = None
    dtype: str = "float32"
    param_dtype: str | None = None
    remat: bool = False


def build_model(source: ModelSource, mesh: jax.sharding.Mesh, *, seed: int) -> Transformer:
    """The model, with its weights created directly in their mesh sharding."""
    if source.hf_path:
        import jax.numpy as jnp
        return from_pretrained(source.hf_path, dtype=jnp.dtype(source.dtype),
                               param_dtype=jnp.dtype(source.param_dtype or source.dtype),
                               mesh=mesh, remat=source.remat)
    if source.config is None:
        raise ValueError("ModelSource needs hf_path= a local HF directory or config= a ModelConfig")
    config = source.config.replace(dtype=source.dtype, param_dtype=source.param_dtype or source.dtype,
                                   remat=source.remat)
    with jax.set_mesh(mesh), nnx.logical_axis_rules(sharding.PARAM_RULES):
        return nnx.jit(lambda: Transformer(config, rngs=nnx.Rngs(seed)))()
