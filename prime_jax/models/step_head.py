"""Explicit process reward model (Let's Verify): a decoder backbone and a per-token score head.

    logit[b, t] = h_t(x, y) . w + c,    p(step s correct) = sigmoid(logit[b, e_s])

``h`` are the backbone's final-norm hidden states, ``w`` (D, 1) the ``score`` kernel, ``c`` (1,)
its bias and ``e_s`` the position of step s's last token (its delimiter, or the last token of the
response; see ``data.steps``). The model returns the logits at every position; callers read them
at step ends. This is Hugging Face's ``*ForTokenClassification`` with ``num_labels = 1``
(backbone under ``model.``, head ``score.weight`` (1, D) and ``score.bias`` (1,); its dropout is
inactive in eval mode), so ``models.hf.save_explicit_prm`` writes a directory that
``transformers.AutoModelForTokenClassification`` loads. Like the ORM, the backbone has tied
embeddings and no LM head.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from prime_jax.models.config import ModelConfig
from prime_jax.models.layers import make_param
from prime_jax.models.reward_head import _replicated_like, orm_config
from prime_jax.models.transformer import Block, Transformer


class ExplicitPRM(nnx.Module):
    """``__call__(ids_bt, attention_mask_bt) -> logits_bt`` float32 (see the module docstring)."""

    def __init__(self, config: ModelConfig, *, rngs: nnx.Rngs):
        self.config = orm_config(config)
        self.backbone = Transformer(self.config, rngs=rngs)
        # Zero init: every step starts at p = 1/2.
        self.score = make_param(rngs, (config.hidden_size, 1), ("embed", None), self.config.weight_dtype,
                                init="zeros")
        self.score_bias = make_param(rngs, (1,), (None,), self.config.weight_dtype, init="zeros")

    def __call__(self, input_ids_bt: jax.Array, attention_mask_bt: jax.Array) -> jax.Array:
        h_btd, _ = self.backbone.hidden_states(input_ids_bt, attention_mask_bt=attention_mask_bt)
        logits_bto = jnp.einsum("btd,do->bto", h_btd.astype(jnp.float32), self.score[...].astype(jnp.float32))
        return logits_bto[:, :, 0] + self.score_bias[...].astype(jnp.float32)[0]


def explicit_prm_from_backbone(backbone: Transformer, *, seed: int = 0, extra_layers: int = 0) -> ExplicitPRM:
    """An explicit PRM whose backbone holds ``backbone``'s weights (its LM head, if any, dropped)
    and a zero score head; shardings follow the given weights.

    ``extra_layers`` > 0 stacks that many new blocks on top of the backbone's (before its final
    norm), each an identity at initialisation: random q/k/v/gate/up weights, zero attention output
    and MLP down projections, so ``x + attn(.) + mlp(.) = x`` and the PRM starts with the same
    scores as without them: depth between the backbone's next-token features and the step head
    (on arithmetic two of them learned faster but did not raise ProcessBench F1; see
    experiments/LOG.md). Each new parameter takes the sharding of the backbone's last layer's
    counterpart.
    """
    if extra_layers < 0:
        raise ValueError(f"extra_layers={extra_layers} must be >= 0")
    depth = backbone.config.num_layers
    config = backbone.config.replace(num_layers=depth + extra_layers)
    abstract = nnx.eval_shape(lambda: ExplicitPRM(config, rngs=nnx.Rngs(seed)))
    graphdef, state = nnx.split(abstract)
    source = dict(nnx.state(backbone, nnx.Param).flat_state())
    fresh = {}
    for i in range(extra_layers):
        block = Block(config, rngs=nnx.Rngs(seed + 1 + i))
        for key, variable in nnx.state(block, nnx.Param).flat_state():
            zero = key[-1] in ("o_proj", "down_proj")
            fresh[("layers", depth + i) + key] = jnp.zeros_like(variable.get_value()) if zero else variable.get_value()
    device = _replicated_like(source[("embed",)].get_value())
    for key, variable in state.flat_state():
        if key[0] != "backbone":
            variable.set_value(jnp.zeros(variable.shape, variable.dtype, device=device))
        elif key[1:] in fresh:
            like = source[("layers", depth - 1) + key[3:]].get_value()
            variable.set_value(jax.device_put(fresh[key[1:]].astype(like.dtype), like.sharding))
        else:
            variable.set_value(source[key[1:]].get_value())
    return nnx.merge(graphdef, state)
