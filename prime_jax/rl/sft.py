"""SFT warm-up: masked cross-entropy on response tokens, before RL.

``loss = -sum_{b,t} m[b,t] log pi(x[b,t] | x[b,<t]) / sum m`` with ``m`` = 1 on
the response tokens (EOS included). AdamW with linear warm-up then cosine
decay. The result is written as a Hugging Face directory
(``<workdir>/sft_model``) that the RL stage loads as policy, reference and
PRM; a finished SFT stage is never repeated on resume.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import time

import jax
import jax.numpy as jnp
import optax
from flax import nnx
from tqdm import tqdm

from prime_jax import sharding
from prime_jax.data import SFTBatcher
from prime_jax.models import token_logprobs
from prime_jax.models.source import save_model
from prime_jax.training.state import Role, init_optimizer
from prime_jax.training.updates import accumulate, clip_and_apply, jit_update, shardings_of, split_micro


@dataclasses.dataclass(frozen=True, kw_only=True)
class SFTConfig:
    """SFT schedule (the paper used lr 1e-5 cosine, warm-up 0.1, 3 epochs at 7B)."""

    steps: int = 1000
    batch_size: int = 64
    seq_len: int = 64
    learning_rate: float = 1e-3
    warmup_fraction: float = 0.1
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    micro_batches: int = 1
    log_every: int = 100
    seed: int = 0


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True, kw_only=True)
class SftMiniBatch:
    """Token rows with the loss mask ``m`` (1 on response tokens); leading micro-batch axis K."""

    tokens_bt: jax.Array
    attention_mask_bt: jax.Array
    loss_mask_bt: jax.Array


def make_sft_update(graphdef, tx: optax.GradientTransformation, max_grad_norm: float = 1.0,
                    state_shardings=None):
    """Jitted SFT step ``(params, opt, SftMiniBatch) -> (params, opt, metrics)`` with
    ``loss = -sum(logp * m) / sum(m)``; micro-batches weigh by their share of response tokens."""

    def loss_fn(params, mb: SftMiniBatch):
        logp_bt = token_logprobs(nnx.merge(graphdef, params), mb.tokens_bt, mb.attention_mask_bt)
        m = mb.loss_mask_bt.astype(jnp.float32)
        loss = -jnp.sum(logp_bt * m) / jnp.maximum(m.sum(), 1.0)
        return loss, ({"sft_loss": loss}, None)

    def step(params, opt_state, mb: SftMiniBatch):
        tokens_k = mb.loss_mask_bt.sum(axis=(1, 2)).astype(jnp.float32)
        grads, metrics, _ = accumulate(loss_fn, params, mb, tokens_k / jnp.maximum(tokens_k.sum(), 1.0))
        params, opt_state, info = clip_and_apply(tx, params, opt_state, grads, max_grad_norm)
        return params, opt_state, {**metrics, **info}

    return jit_update(step, state_shardings, 1)


def make_sft_optimizer(config: SFTConfig) -> optax.GradientTransformation:
    schedule = optax.warmup_cosine_decay_schedule(
        0.0, config.learning_rate, max(1, int(config.warmup_fraction * config.steps)),
        max(config.steps, 2), end_value=0.1 * config.learning_rate)
    return optax.adamw(schedule, weight_decay=config.weight_decay)


def run_sft(policy: Role, examples, tokenizer, config: SFTConfig, mesh, *, workdir: pathlib.Path,
            log=print) -> Role:
    """Train ``policy`` on ``examples``; save ``workdir/sft_model``; return the trained role."""
    batcher = SFTBatcher(examples, tokenizer, batch_size=config.batch_size // jax.process_count(),
                         seq_len=config.seq_len, seed=config.seed, process_index=jax.process_index(),
                         process_count=jax.process_count())
    if len(batcher) == 0:
        raise ValueError(f"SFT: none of {len(examples)} examples fits seq_len={config.seq_len}")
    tx = make_sft_optimizer(config)
    params = policy.params
    opt_state = sharding.replicate_unsharded(init_optimizer(tx, params), mesh)
    update = make_sft_update(policy.graphdef, tx, config.max_grad_norm,
                             (shardings_of(params), shardings_of(opt_state)))
    history, start = [], time.time()
    with jax.set_mesh(mesh):
        for step in tqdm(range(1, config.steps + 1), desc="sft", mininterval=2.0, disable=jax.process_index() > 0):
            batch = next(batcher)
            tokens, attention, loss_mask = (sharding.host_to_global(x, mesh, ("batch", "length"))
                                            for x in (batch.tokens, batch.attention_mask, batch.loss_mask))
            micro = split_micro(SftMiniBatch(tokens_bt=tokens, attention_mask_bt=attention, loss_mask_bt=loss_mask),
                                config.micro_batches)
            params, opt_state, metrics = update(params, opt_state, micro)
            if step % config.log_every == 0 or step == config.steps:
                row = {"sft_step": step, "sft_loss": float(metrics["sft_loss"]),
                       "grad_norm": float(metrics["grad_norm"]), "seconds": time.time() - start}
                history.append(row)
                log(json.dumps(row))
    trained = Role(policy.graphdef, params)
    out = workdir / "sft_model"
    save_model(trained.module(), out, tokenizer, mesh)
    if jax.process_index() == 0:
        (workdir / "sft_history.json").write_text(json.dumps(history, indent=1))
    log(f"sft: {config.steps} steps in {time.time() - start:.1f}s; saved {out}")
    return trained
