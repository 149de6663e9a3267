"""Where the initial (SFT) weights of a run come from: a local HF directory or a fresh init."""

from __future__ import annotations

import dataclasses

import jax
from flax import nnx

from prime_jax import sharding
from prime_jax.models import ModelConfig, Transformer, from_pretrained, save_pretrained


@dataclasses.dataclass(frozen=True, kw_only=True)
class ModelSource:
    """``hf_path``: load a local Hugging Face directory; else initialise ``config`` randomly.

    ``dtype``/``param_dtype`` override the loaded model's compute/storage dtypes; ``remat``,
    ``remat_barriers``, ``logits_chunk`` and ``attention`` set those ``ModelConfig`` compute settings
    (activation recomputation and whether it keeps JAX's CSE barriers, vocabulary logits built
    ``logits_chunk`` positions at a time in log-prob passes, and the attention kernel:
    ``models.attention``, "auto" = the platform's best).
    """

    hf_path: str | None = None
    config: ModelConfig | None = None
    dtype: str = "float32"
    param_dtype: str | None = None
    remat: bool = False
    remat_barriers: bool = True
    logits_chunk: int | None = None
    attention: str = "auto"

    def settings_on(self, config: ModelConfig) -> ModelConfig:
        """``config`` with this source's dtypes and compute settings (what ``build_model`` builds)."""
        return config.replace(dtype=self.dtype, param_dtype=self.param_dtype or self.dtype, remat=self.remat,
                              remat_barriers=self.remat_barriers, logits_chunk=self.logits_chunk,
                              attention=self.attention)


def build_model(source: ModelSource, mesh: jax.sharding.Mesh, *, seed: int) -> Transformer:
    """The model, with its weights created directly in their mesh sharding."""
    if source.hf_path:
        import jax.numpy as jnp
        return from_pretrained(source.hf_path, dtype=jnp.dtype(source.dtype),
                               param_dtype=jnp.dtype(source.param_dtype or source.dtype),
                               mesh=mesh, remat=source.remat, remat_barriers=source.remat_barriers,
                               logits_chunk=source.logits_chunk, attention=source.attention)
    if source.config is None:
        raise ValueError("ModelSource needs hf_path= a local HF directory or config= a ModelConfig")
    config = source.settings_on(source.config)
    with jax.set_mesh(mesh), nnx.logical_axis_rules(sharding.PARAM_RULES):
        return nnx.jit(lambda: Transformer(config, rngs=nnx.Rngs(seed)))()


def save_model(module: Transformer, path, tokenizer, mesh: jax.sharding.Mesh) -> None:
    """``save_pretrained`` from process 0; with several processes the weights are first
    replicated so that one host holds them all (fine for the small models such runs start
    from; large runs start from ``hf_path`` and never save here)."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils
        from jax.sharding import NamedSharding, PartitionSpec

        graphdef, params = nnx.split(module)
        params = jax.jit(lambda p: p, out_shardings=NamedSharding(mesh, PartitionSpec()))(params)
        module = nnx.merge(graphdef, params)
        if jax.process_index() == 0:
            save_pretrained(module, path, tokenizer=tokenizer)
        multihost_utils.sync_global_devices(f"saved {path}")
    else:
        save_pretrained(module, path, tokenizer=tokenizer)
