"""Outcome reward model (ORM): a decoder backbone and a scalar head read at the last real token.

    r(x, y) = h_T(x, y) . w,    T = the rightmost position b with attention_mask[b, T] = 1

``h`` are the backbone's final-norm hidden states and ``w`` (D, 1) the ``score`` kernel. This is
Hugging Face's ``*ForSequenceClassification`` with ``num_labels = 1`` (backbone under ``model.``,
head ``score.weight`` (1, D), no bias; HF picks the rightmost non-pad token, the same token for
rows whose padding is ``pad_token_id``), so ``models.hf.save_orm`` writes a directory that
``transformers.AutoModelForSequenceClassification`` loads. The backbone has tied embeddings and
no LM head: an ORM never needs token logits.

``position_scores`` reads the same head at every position, ``r_t = h_t . w`` (B, T): the score of
each prefix, e.g. at every reasoning step's end (ProcessBench's "ORM read at every step end");
at the last real token it equals ``r``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from prime_jax.models.config import ModelConfig
from prime_jax.models.layers import make_param
from prime_jax.models.transformer import Transformer


def orm_config(config: ModelConfig) -> ModelConfig:
    """The backbone config of an ORM built on ``config``'s weights: no separate LM head."""
    return config.replace(tie_word_embeddings=True)


class OutcomeRewardModel(nnx.Module):
    """``__call__(ids_bt, attention_mask_bt) -> r_b`` float32 (see the module docstring)."""

    def __init__(self, config: ModelConfig, *, rngs: nnx.Rngs):
        self.config = orm_config(config)
        self.backbone = Transformer(self.config, rngs=rngs)
        # Zero init: every response starts at r = 0 (probability 1/2).
        self.score = make_param(rngs, (config.hidden_size, 1), ("embed", None), self.config.weight_dtype,
                                init="zeros")

    def __call__(self, input_ids_bt: jax.Array, attention_mask_bt: jax.Array) -> jax.Array:
        h_btd, _ = self.backbone.hidden_states(input_ids_bt, attention_mask_bt=attention_mask_bt)
        mask_bt = attention_mask_bt.astype(jnp.int32)
        last_b = jnp.argmax(jnp.arange(mask_bt.shape[1])[None, :] * mask_bt, axis=1)
        h_bd = jnp.take_along_axis(h_btd, last_b[:, None, None], axis=1)[:, 0]
        return jnp.einsum("bd,do->bo", h_bd.astype(jnp.float32), self.score[...].astype(jnp.float32))[:, 0]

    def position_scores(self, input_ids_bt: jax.Array, attention_mask_bt: jax.Array) -> jax.Array:
        """``r_bt = h_bt . w`` float32 (B, T): the head read at every position (padding included;
        mask it yourself). ``r_bt[b, T_b]`` at the last real token ``T_b`` is ``self(...)[b]``."""
        h_btd, _ = self.backbone.hidden_states(input_ids_bt, attention_mask_bt=attention_mask_bt)
        return jnp.einsum("btd,do->bto", h_btd.astype(jnp.float32), self.score[...].astype(jnp.float32))[..., 0]


def orm_from_backbone(backbone: Transformer, *, seed: int = 0) -> OutcomeRewardModel:
    """An ORM whose backbone holds ``backbone``'s weights (its LM head, if any, dropped) and a
    zero score head; shardings follow the given weights."""
    abstract = nnx.eval_shape(lambda: OutcomeRewardModel(backbone.config, rngs=nnx.Rngs(seed)))
    graphdef, state = nnx.split(abstract)
    source = dict(nnx.state(backbone, nnx.Param).flat_state())
    for key, variable in state.flat_state():
        if key[0] == "backbone":
            variable.set_value(source[key[1:]].get_value())
        else:
            weights = source[("embed",)].get_value()
            variable.set_value(jnp.zeros(variable.shape, variable.dtype,
                                         device=_replicated_like(weights)))
    return nnx.merge(graphdef, state)


def _replicated_like(array: jax.Array):
    """A fully replicated sharding on ``array``'s devices (for small new parameters)."""
    sharding = array.sharding
    if isinstance(sharding, jax.sharding.NamedSharding):
        return jax.sharding.NamedSharding(sharding.mesh, jax.sharding.PartitionSpec())
    return sharding
