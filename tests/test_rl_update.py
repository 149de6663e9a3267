"""One PRIME update on a fixed batch: PRM modes, advantages, and the PPO step's direction."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from prime_jax import rollout, sharding
from prime_jax.experience.collect import CollectConfig
from prime_jax.experience.generate import decode_responses
from prime_jax.reward_models.updates import PrmLossConfig
from prime_jax.rl import update as rl_update
from prime_jax.rl.policy_update import PolicyLossConfig
from prime_jax.training.forward import make_logprob_fn
from prime_jax.data import PromptPipeline, load_tokenizer, make_synthetic_rl_prompts
from prime_jax.models.source import ModelSource, build_model
from prime_jax.models import ModelConfig
from prime_jax.rl.config import PrimeConfig
from prime_jax.experience.batch import GroupBuffer, score_rows
from prime_jax.training.state import Role, make_train_state

CONFIG = ModelConfig(architecture="qwen2", vocab_size=64, hidden_size=32, intermediate_size=64, num_layers=1,
                     num_heads=4, num_kv_heads=2, head_dim=8, max_position_embeddings=64,
                     tie_word_embeddings=True, bos_token_id=1, eos_token_id=2, pad_token_id=0)
N = 4


@pytest.fixture(scope="module")
def setting():
    mesh = sharding.make_mesh(sharding.MeshConfig(data=4, fsdp=2))
    role = Role.of(build_model(ModelSource(config=CONFIG), mesh, seed=0))
    tokenizer = load_tokenizer("char")
    pipeline = PromptPipeline(make_synthetic_rl_prompts("arithmetic", 0, 8), tokenizer, num_samples=N,
                              max_prompt_length=16, shuffle=False)
    prompts = pipeline.next_prompts(4)
    with jax.set_mesh(mesh):
        out = rollout.sample(role.module(), prompts.prompt_ids, prompts.prompt_mask, key=jax.random.key(1),
                             config=rollout.SamplingConfig(max_new_tokens=10, eos_id=2))
    tokens, mask = np.asarray(out.tokens), np.asarray(out.mask)
    acc = np.array([1, 0, 0, 1, 0, 1, 1, 1, 0, 0, 1, 0, 1, 0, 0, 0], np.float32)  # every group mixed
    logp_fn = make_logprob_fn(role.graphdef)
    zeros = np.zeros(tokens.shape, np.float32)
    rows = score_rows(prompts, tokens, mask, np.asarray(out.truncated), zeros, zeros,
                      decode_responses(tokenizer, tokens, mask), acc)
    with jax.set_mesh(mesh):
        logp = np.asarray(logp_fn(role.params, sharding.place(rows.sequences(), mesh)))
    batch = dataclasses.replace(rows, old_logp_bl=logp, ref_logp_bl=logp)
    return mesh, role, batch, logp_fn


def _state(role, policy_tx, prm_tx):
    copy = lambda t: jax.tree.map(lambda x: jnp.array(x, copy=True), t)  # noqa: E731
    return make_train_state(copy(role.params), copy(role.params), policy_tx, prm_tx, seed=0)


@pytest.mark.parametrize("mode", ["after", "before", "none"])
def test_prm_modes(setting, mode):
    mesh, role, batch, logp_fn = setting
    config = PrimeConfig(collect=CollectConfig(num_samples=N, batch_prompts=4), prm_mini_batch=8, policy_mini_batch=8, prm_mode=mode)
    tx = optax.adam(1e-2)
    updaters = rl_update.make_updaters(role.graphdef, role.graphdef, tx, tx, config,
                                       PolicyLossConfig(), PrmLossConfig())
    state = _state(role, tx, tx)
    with jax.set_mesh(mesh):
        new_state, logp_prm, metrics = rl_update.prm_phase(state, batch, updaters, config, mesh)
        after_update = np.asarray(logp_fn(new_state.prm_params, sharding.place(batch.sequences(), mesh)))
    changed = any(not np.array_equal(a, b) for a, b in
                  zip(jax.tree.leaves(state.prm_params), jax.tree.leaves(new_state.prm_params)))
    if mode == "none":
        assert not changed and metrics == {}
        np.testing.assert_allclose(logp_prm, batch.ref_logp_bl, atol=1e-6)
    elif mode == "before":
        assert changed
        np.testing.assert_allclose(logp_prm, after_update, atol=1e-6)
    else:  # the first mini-batch's rewards come from the PRM before any update
        assert changed and metrics["prm_loss"] > 0
        np.testing.assert_allclose(logp_prm[:8], batch.ref_logp_bl[:8], atol=1e-5)
        assert not np.allclose(logp_prm[8:], batch.ref_logp_bl[8:], atol=1e-5)


def test_one_step_raises_positive_advantage_responses(setting):
    mesh, role, batch, logp_fn = setting
    config = PrimeConfig(collect=CollectConfig(num_samples=N, batch_prompts=4), prm_mini_batch=16, policy_mini_batch=16)
    tx = optax.sgd(0.5)
    updaters = rl_update.make_updaters(role.graphdef, role.graphdef, tx, optax.adam(1e-3), config,
                                       PolicyLossConfig(max_grad_norm=1e9), PrmLossConfig())
    state = _state(role, tx, optax.adam(1e-3))
    with jax.set_mesh(mesh):
        state, logp_prm, _ = rl_update.prm_phase(state, batch, updaters, config, mesh)
        adv = np.asarray(rl_update.advantage_phase(batch, logp_prm, config, (8,), mesh).advantages)
        state, metrics = rl_update.policy_phase(state, batch, adv, updaters, config, mesh, np.random.default_rng(0))
        new_logp = np.asarray(logp_fn(state.policy_params, sharding.place(batch.sequences(), mesh)))
    mask = batch.response_mask_bl
    gain_b = ((new_logp - batch.old_logp_bl) * mask).sum(1)
    mean_adv_b = (adv * mask).sum(1) / mask.sum(1)
    assert gain_b[mean_adv_b > 0].mean() > 0 > gain_b[mean_adv_b < 0].mean()
    assert np.corrcoef(gain_b, mean_adv_b)[0, 1] > 0.5
    assert metrics["policy_skipped"] == 0.0


def test_group_buffer_keeps_surplus_and_fills_short_batches(setting):
    _, _, batch, _ = setting
    buffer = GroupBuffer(capacity=2, num_samples=N)
    buffer.add(batch, np.array([True, False, True, True]))
    assert buffer.full and buffer.surplus == [int(batch.prompt_index_b[12])]
    np.testing.assert_array_equal(buffer.batch().prompt_index_b, batch.prompt_index_b[np.r_[0:4, 8:12]])
    short = GroupBuffer(capacity=2, num_samples=N)
    short.add(batch, np.array([False, False, True, False]))
    assert short.fill_from_dropped() == 1 and short.full
