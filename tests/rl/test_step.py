"""One RL step after collection on a fixed batch: PRM modes, advantages, the PPO step's direction,
and the step's host <-> mesh traffic."""

import collections
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
from prime_jax.rl import step as rl_step
from prime_jax.rl.mesh_batch import MeshBatch
from prime_jax.rl.online_prm import OnlineImplicitPrm, prm_row_order, q_length_correlation
from prime_jax.rl.policy_update import PolicyLossConfig, make_policy_update
from prime_jax.training.forward import make_logprob_fn
from prime_jax.data import PromptPipeline, load_tokenizer, make_synthetic_rl_prompts
from prime_jax.models.source import ModelSource, build_model
from prime_jax.models import ModelConfig
from prime_jax.rl.config import PrimeConfig
from prime_jax.rewards import ImplicitRewardConfig
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


def _prm(role, tx, config, state, mesh) -> OnlineImplicitPrm:
    """The online implicit PRM source, against the role's weights as the reference."""
    return OnlineImplicitPrm.build(config, graphdef=role.graphdef, tx=tx, state=state, reference_params=role.params,
                                   delimiter_ids=(8,), mesh=mesh)


def _prm_phase(role, tx, config, state, batch, mesh):
    """The PRM's update on ``batch``: new state, its log-probs (host) and its mean metrics."""
    state, logp_bl, parts = _prm(role, tx, config, state, mesh).update(state, MeshBatch.place(batch, mesh))
    return state, np.asarray(sharding.fetch(logp_bl, mesh)), rl_step.fetch_metric_means(parts)[0]


def _update(role, prm_tx, policy_tx, policy_loss, config, state, batch, mesh, seed=0):
    """Source then PPO on ``batch``: new state, host advantages, PRM and policy mean metrics."""
    placed = MeshBatch.place(batch, mesh)
    state, out = _prm(role, prm_tx, config, state, mesh).advantages(state, placed)
    policy_update = make_policy_update(role.graphdef, policy_tx, policy_loss)
    state, parts = rl_step.policy_phase(state, placed, out.advantages.advantages, policy_update, config, mesh,
                                        np.random.default_rng(seed).permutation(batch.num_rows))
    prm_metrics, policy_metrics = rl_step.fetch_metric_means(out.metric_parts, parts)
    return state, np.asarray(sharding.fetch(out.advantages.advantages, mesh)), prm_metrics, policy_metrics


@pytest.mark.parametrize("mode", ["after", "before", "none"])
def test_prm_modes(setting, mode):
    mesh, role, batch, logp_fn = setting
    config = PrimeConfig(collect=CollectConfig(num_samples=N, batch_prompts=4), prm_mini_batch=8, policy_mini_batch=8, prm_mode=mode)
    tx = optax.adam(1e-2)
    state = _state(role, tx, tx)
    before = [np.array(x) for x in jax.tree.leaves(state.prm_params)]  # the update donates its input
    with jax.set_mesh(mesh):
        new_state, logp_prm, metrics = _prm_phase(role, tx, config, state, batch, mesh)
        after_update = np.asarray(logp_fn(new_state.prm_params, sharding.place(batch.sequences(), mesh)))
    changed = any(not np.array_equal(a, np.asarray(b)) for a, b in zip(before, jax.tree.leaves(new_state.prm_params)))
    if mode == "none":
        assert not changed and metrics == {}
        np.testing.assert_allclose(logp_prm, batch.ref_logp_bl, atol=1e-6)
    elif mode == "before":
        assert changed
        np.testing.assert_allclose(logp_prm, after_update, atol=1e-6)
    else:  # the first mini-batch's rewards come from the PRM before any update
        assert changed and metrics["prm_loss"] > 0
        np.testing.assert_array_equal(logp_prm[:8], batch.ref_logp_bl[:8])  # PRM = reference: its log-probs
        assert not np.allclose(logp_prm[8:], batch.ref_logp_bl[8:], atol=1e-5)


def test_one_step_raises_positive_advantage_responses(setting):
    mesh, role, batch, logp_fn = setting
    config = PrimeConfig(collect=CollectConfig(num_samples=N, batch_prompts=4), prm_mini_batch=16, policy_mini_batch=16)
    tx = optax.sgd(0.5)
    state = _state(role, tx, optax.adam(1e-3))
    with jax.set_mesh(mesh):
        state, adv, _, metrics = _update(role, optax.adam(1e-3), tx, PolicyLossConfig(max_grad_norm=1e9), config,
                                         state, batch, mesh)
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
    short = GroupBuffer(capacity=3, num_samples=N)
    short.add(batch, np.array([False, False, True, False]))
    short.fill_from_dropped()  # 3 dropped groups, nearest mean accuracy 0.5 first
    assert short.full
    np.testing.assert_array_equal(short.batch().acc_b, batch.acc_b[np.r_[8:12, 0:4, 4:8]])


def test_placeholder_groups_are_empty_rows(setting):
    _, _, batch, _ = setting
    buffer = GroupBuffer(capacity=3, num_samples=N)
    buffer.add(batch, np.array([False, True, False, False]))
    buffer.pad_with_placeholders()
    padded = buffer.batch()
    assert padded.num_rows == 3 * N
    np.testing.assert_array_equal(padded.tokens_bs[:N], batch.tokens_bs[N:2 * N])
    assert padded.response_mask_bl[N:].sum() == 0 and padded.acc_b[N:].sum() == 0
    assert padded.attention_mask_bs[N:].sum() > 0  # the forward passes still see a prompt


def _short_and_kept(batch):
    """Groups 0 and 2 kept and two placeholder groups after them, and the kept groups alone."""
    buffer = GroupBuffer(capacity=4, num_samples=N)
    buffer.add(batch, np.array([True, False, True, False]))
    buffer.pad_with_placeholders()
    return buffer.batch(), batch.rows(np.r_[0:N, 2 * N:3 * N])


def test_a_short_batch_trains_like_its_kept_groups_alone(setting):
    """Placeholder rows change no advantage, no PRM update and no policy update: every loss,
    baseline and whitening statistic sees only the kept groups (CollectConfig.short_batch='mask')."""
    mesh, role, batch, _ = setting
    padded, kept = _short_and_kept(batch)
    tx = optax.sgd(0.1)
    results = []
    for rows, size in ((padded, 4 * N), (kept, 2 * N)):
        # "before": rewards from the updated PRM (a PRM still equal to the reference gives q that is
        # float rounding, which batch_norm would scale to O(1) differently in the two batches)
        config = PrimeConfig(collect=CollectConfig(num_samples=N, batch_prompts=rows.num_rows // N),
                             prm_mini_batch=size, policy_mini_batch=size, prm_mode="before",
                             prm_loss=PrmLossConfig(max_grad_norm=1e9))
        with jax.set_mesh(mesh):
            state, adv, prm_metrics, metrics = _update(role, tx, tx, PolicyLossConfig(max_grad_norm=1e9), config,
                                                       _state(role, tx, tx), rows, mesh)
        results.append((state, adv, prm_metrics, metrics))
    (padded_state, padded_adv, padded_prm, padded_policy), (kept_state, kept_adv, kept_prm, kept_policy) = results
    np.testing.assert_allclose(padded_adv[:2 * N], kept_adv, atol=1e-5)
    assert np.all(padded_adv[2 * N:] == 0)
    # (prm_acc and prm_pairwise_acc read signs of scores that are float rounding before the update)
    np.testing.assert_allclose(padded_prm["prm_loss"], kept_prm["prm_loss"], rtol=1e-5)
    np.testing.assert_allclose(padded_policy["policy_loss"], kept_policy["policy_loss"], rtol=1e-4, atol=1e-7)
    for params in ("prm_params", "policy_params"):
        for a, b in zip(jax.tree.leaves(getattr(padded_state, params)), jax.tree.leaves(getattr(kept_state, params))):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-6)


def test_a_mini_batch_of_placeholders_only_changes_nothing(setting):
    mesh, role, batch, _ = setting
    buffer = GroupBuffer(capacity=2, num_samples=N)
    buffer.add(batch.rows(np.r_[0:N]), np.array([False]))
    buffer.pad_with_placeholders()
    empty = buffer.batch()
    config = PrimeConfig(collect=CollectConfig(num_samples=N, batch_prompts=2), prm_mini_batch=2 * N,
                         policy_mini_batch=2 * N)
    tx = optax.adam(1e-2)
    before = _state(role, tx, tx)
    before_leaves = [np.array(x) for x in jax.tree.leaves(before)]  # the updates donate their inputs
    with jax.set_mesh(mesh):
        state, _, prm_metrics, metrics = _update(role, tx, tx, PolicyLossConfig(), config, before, empty, mesh)
    for a, b in zip(before_leaves, jax.tree.leaves(state)):
        np.testing.assert_array_equal(a, np.asarray(b))
    assert metrics["policy_skipped"] == 0.0 and prm_metrics["prm_skipped"] == 0.0


def test_collect_config_names_a_bad_short_batch():
    with pytest.raises(ValueError, match=r"CollectConfig.short_batch='fill': expected one of \('mask', 'fill_from_dropped'\)"):
        CollectConfig(short_batch="fill")


def test_prm_row_order_is_the_reference_shard_layout():
    np.testing.assert_array_equal(prm_row_order(8, 4, 1), np.arange(8))
    # 2 shards of 4 rows, 2-row mini-batches per shard: global mini-batch k = slice k of each shard
    np.testing.assert_array_equal(prm_row_order(8, 4, 2), [0, 1, 4, 5, 2, 3, 6, 7])
    with pytest.raises(ValueError, match="do not split 12 rows into 8 equal normalisation chunks"):
        prm_row_order(12, 8, 8)
    with pytest.raises(ValueError, match=r"prm_mini_batch=8 with ImplicitRewardConfig.num_chunks=4"):
        PrimeConfig(collect=CollectConfig(num_samples=N, batch_prompts=4), prm_mini_batch=8, policy_mini_batch=8,
                    reward=ImplicitRewardConfig(num_chunks=4))
    with pytest.raises(ValueError, match=r"prm_micro_batches=4: each PRM micro-batch of 2 responses"):
        PrimeConfig(collect=CollectConfig(num_samples=N, batch_prompts=4), prm_mini_batch=8, policy_mini_batch=8,
                    prm_micro_batches=4)


def test_every_normalisation_chunk_mixes_prm_versions(setting):
    """With num_chunks = 2 and two PRM mini-batches ("after"), each chunk of 8 rows holds rows scored
    before the first update (PRM = reference) and rows scored after it, as in the reference's
    per-shard mini-batches; in plain row order chunk 0 would be scored by the reference alone."""
    mesh, role, batch, _ = setting
    config = PrimeConfig(collect=CollectConfig(num_samples=N, batch_prompts=4), prm_mini_batch=8,
                         policy_mini_batch=8, reward=ImplicitRewardConfig(num_chunks=2))
    tx = optax.adam(1e-2)
    with jax.set_mesh(mesh):
        _, logp_prm, _ = _prm_phase(role, tx, config, _state(role, tx, tx), batch, mesh)
    moved_b = ~np.all(np.isclose(logp_prm, batch.ref_logp_bl, atol=1e-5), axis=1)
    np.testing.assert_array_equal(moved_b, np.repeat([False, True, False, True], N))


@pytest.mark.parametrize("num_chunks, mini_batch", [(1, 8), (2, 8), (4, 16)])
def test_a_prm_equal_to_the_reference_gives_zero_process_reward(setting, num_chunks, mini_batch):
    """Step 1: the rows a PRM scores while its weights still equal the reference's get exactly zero
    process reward under every num_chunks (its gradient forward differs from the reference pass by
    ~1e-6, which batch_norm would scale to full size); a PRM at learning rate 0 never moves off 0."""
    mesh, role, batch, _ = setting
    config = PrimeConfig(collect=CollectConfig(num_samples=N, batch_prompts=4), prm_mini_batch=mini_batch,
                         policy_mini_batch=8, reward=ImplicitRewardConfig(num_chunks=num_chunks))
    first_b = np.isin(np.arange(batch.num_rows), prm_row_order(batch.num_rows, mini_batch, num_chunks)[:mini_batch])
    for lr, mode in ((1e-2, "after"), (0.0, "after"), (0.0, "before")):
        tx = optax.adam(lr)
        mode_config = dataclasses.replace(config, prm_mode=mode)
        with jax.set_mesh(mesh):
            state = _state(role, tx, tx)
            _, out = _prm(role, tx, mode_config, state, mesh).advantages(state, MeshBatch.place(batch, mesh))
            rewards_bl = np.asarray(sharding.fetch(out.advantages.process_rewards, mesh))
        zero_b = np.all(rewards_bl == 0.0, axis=1)
        if lr:
            np.testing.assert_array_equal(zero_b, first_b)  # only the rows scored before the update
        else:
            assert zero_b.all(), (mode, np.abs(rewards_bl).max())


def test_q_length_correlation_reads_the_implicit_score_against_length(setting):
    _, _, batch, _ = setting
    mask = batch.response_mask_bl.astype(np.float32)
    assert len(set(mask.sum(1).tolist())) > 1, "want responses of several lengths"
    per_token = batch.ref_logp_bl + 0.01 * mask  # sum q = 0.01 * length: perfectly length-driven
    assert q_length_correlation(batch.response_mask_bl, batch.ref_logp_bl, per_token) == pytest.approx(1.0)
    per_row = batch.ref_logp_bl + (mask / mask.sum(1, keepdims=True)) * np.arange(batch.num_rows)[:, None]
    assert abs(q_length_correlation(batch.response_mask_bl, batch.ref_logp_bl, per_row)) < 0.99  # the score now follows the row
    assert np.isnan(q_length_correlation(batch.response_mask_bl, batch.ref_logp_bl, batch.ref_logp_bl))  # PRM = reference: no score


H2D = ("device_put", "make_array_from_callback", "make_array_from_process_local_data")
D2H = ("__array__", "__float__", "__int__", "__bool__", "__index__", "item", "tolist")


def _count_transfers(monkeypatch) -> collections.Counter:
    """Count every array that crosses between host and mesh through JAX's explicit placement
    functions (host -> mesh, one per array) and every read of a mesh array's value on the host
    (mesh -> host: ``np.asarray`` of a sharded array, ``float``, ``int``, ``bool``, ``.item()``)."""
    from jax._src import array as jax_array

    counts = collections.Counter()

    def counted(owner, name, key):
        original = getattr(owner, name)

        def wrapper(*args, **kwargs):
            counts[key] += 1
            return original(*args, **kwargs)
        monkeypatch.setattr(owner, name, wrapper)
    for name in H2D:
        counted(jax, name, "host_to_mesh")
    for name in D2H:
        counted(jax_array.ArrayImpl, name, "mesh_to_host")
    return counts


@pytest.mark.parametrize("mode", ["after", "before"])
def test_a_step_crosses_between_host_and_mesh_a_fixed_number_of_times(setting, mode, monkeypatch):
    """One RL step (2 PRM and 2 PPO mini-batches): the batch's 6 arrays and the PPO row index go
    to the mesh; the metrics (one array), the PRM's log-probs and the process rewards (host-side
    diagnostics) come back. Nothing moves implicitly (a numpy array handed to a jitted function
    would raise under the transfer guard)."""
    mesh, role, batch, _ = setting
    config = PrimeConfig(collect=CollectConfig(num_samples=N, batch_prompts=4), prm_mini_batch=8,
                         policy_mini_batch=8, prm_mode=mode)
    tx = optax.adam(1e-3)
    state = _state(role, tx, tx)
    policy_update = make_policy_update(role.graphdef, tx, PolicyLossConfig())
    with jax.set_mesh(mesh):
        source = _prm(role, tx, config, state, mesh)
        for step in (1, 2):  # the second step runs compiled code only
            counts = _count_transfers(monkeypatch)
            with jax.transfer_guard_host_to_device("disallow"):
                state, metrics = rl_step.rl_step(state, batch, source=source, policy_update=policy_update,
                                                 config=config, mesh=mesh, rng=np.random.default_rng([0, step]))
            monkeypatch.undo()
            assert dict(counts) == {"host_to_mesh": 7, "mesh_to_host": 3}, (step, dict(counts))
    assert {"prm_loss", "policy_loss", "prm_q_length_corr", "process_reward_mean"} <= set(metrics)
