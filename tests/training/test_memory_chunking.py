"""Memory settings change nothing but memory: chunked logits and micro-batched log-prob passes.

* ``ModelConfig.logits_chunk``: log-probs, entropies and their gradients equal the unchunked
  ones (chunk dividing T or not, left padding), and the compiled program needs less scratch
  memory (a structural check on XLA's memory analysis, not a timing).
* ``make_logprob_fn(graphdef, rows_per_pass)``: the same log-probs as one pass, on the 8-device
  mesh, without communication beyond the single pass's.
"""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from prime_jax import sharding
from prime_jax.experience.collect import CollectConfig
from prime_jax.training.forward import SequenceBatch, make_logprob_fn
from prime_jax.models.source import ModelSource, build_model
from prime_jax.models import (
    ModelConfig,
    Transformer,
    save_pretrained,
    token_logprobs_and_entropy,
)
from prime_jax.rl.config import PrimeConfig
from prime_jax.training.state import Role

CONFIG = ModelConfig(architecture="qwen2", vocab_size=96, hidden_size=32, intermediate_size=64, num_layers=2,
                     num_heads=4, num_kv_heads=2, head_dim=8, max_position_embeddings=64)
T = 12


def _models(chunk, tie):
    """(unchunked, chunked) models with the same weights."""
    config = CONFIG.replace(tie_word_embeddings=tie)
    return (Transformer(config, rngs=nnx.Rngs(0)),
            Transformer(config.replace(logits_chunk=chunk), rngs=nnx.Rngs(0)))


def _batch():
    """Three rows of T tokens: no padding, 3 and 7 left-padding slots."""
    tokens_bt = np.random.RandomState(0).randint(3, CONFIG.vocab_size, (3, T)).astype(np.int32)
    mask_bt = (np.arange(T)[None] >= np.array([[0], [3], [7]])).astype(np.int32)
    return jnp.asarray(tokens_bt * mask_bt), jnp.asarray(mask_bt)


@pytest.mark.parametrize("chunk,tie", [(4, False), (5, True), (64, False)])
def test_chunked_logprobs_and_entropy_equal_unchunked(chunk, tie):
    plain, chunked = _models(chunk, tie)
    tokens, mask = _batch()
    logp, ent = token_logprobs_and_entropy(plain, tokens, mask, temperature=0.7)
    logp_c, ent_c = jax.jit(lambda t, m: token_logprobs_and_entropy(chunked, t, m, temperature=0.7))(
        tokens, mask)
    np.testing.assert_allclose(np.asarray(logp_c), np.asarray(logp), atol=1e-5)
    np.testing.assert_allclose(np.asarray(ent_c), np.asarray(ent), atol=1e-5)
    assert (np.asarray(logp_c)[mask == 0] == 0).all() and (np.asarray(logp_c)[:, 0] == 0).all()


@pytest.mark.parametrize("tie", [False, True])
def test_chunked_gradients_equal_unchunked(tie):
    plain, chunked = _models(5, tie)
    tokens, mask = _batch()
    weight_bt = jnp.asarray(np.random.RandomState(1).randn(3, T), jnp.float32)

    def grads(model):
        graphdef, params = nnx.split(model)

        def loss(p):
            logp_bt, entropy_bt = token_logprobs_and_entropy(nnx.merge(graphdef, p), tokens, mask)
            return jnp.sum(weight_bt * logp_bt) + 0.3 * jnp.sum(entropy_bt)

        return jax.jit(jax.grad(loss))(params)

    expected, actual = grads(plain), grads(chunked)
    jax.tree.map(lambda a, e: np.testing.assert_allclose(np.asarray(a), np.asarray(e), rtol=1e-4, atol=1e-5),
                 actual, expected)


def _scratch_bytes(config, tokens_bt):
    """Compiled temp bytes of the log-prob forward and of its gradient (None: not reported)."""
    graphdef, params = nnx.split(Transformer(config, rngs=nnx.Rngs(0)))

    def forward(p):
        return token_logprobs_and_entropy(nnx.merge(graphdef, p), tokens_bt)

    def loss(p):
        logp_bt, entropy_bt = forward(p)
        return jnp.sum(logp_bt) + jnp.sum(entropy_bt)

    analyses = [jax.jit(f).lower(params).compile().memory_analysis() for f in (forward, jax.grad(loss))]
    return [None if a is None else a.temp_size_in_bytes for a in analyses]


def test_chunked_logits_need_less_scratch_memory():
    config = CONFIG.replace(vocab_size=4096, num_layers=1, max_position_embeddings=256)
    tokens = jnp.zeros((2, 256), jnp.int32)
    temp = {chunk: _scratch_bytes(config.replace(logits_chunk=chunk), tokens) for chunk in (None, 64)}
    assert None not in temp[None] + temp[64], f"no compiled memory analysis on {jax.default_backend()}"
    logits_bytes = 2 * 256 * 4096 * 4  # one float32 (B, T, V) buffer: 8 MiB
    # Measured on XLA:CPU: forward 16.0 -> 4.1 MiB (the rest is attention), gradient 37.5 -> 13.5 MiB.
    for plain, chunked in zip(temp[None], temp[64]):
        assert plain >= logits_bytes and chunked < plain / 2, (plain, chunked)


def _collectives(compiled) -> int:
    return len(re.findall(r"all-to-all|all-gather|collective-permute|all-reduce", compiled.as_text()))


@pytest.fixture(scope="module")
def sharded_policy():
    mesh = sharding.make_mesh(sharding.MeshConfig(data=4, fsdp=2))
    model = build_model(ModelSource(config=CONFIG, logits_chunk=5), mesh, seed=0)
    assert model.config.logits_chunk == 5
    graphdef, params = nnx.split(model)
    rng = np.random.RandomState(2)
    tokens = rng.randint(3, CONFIG.vocab_size, (32, T)).astype(np.int32)
    mask = (np.arange(T)[None] >= rng.randint(0, 5, (32, 1))).astype(np.int32)
    batch = SequenceBatch(tokens_bs=tokens * mask, attention_mask_bs=mask,
                                     response_mask_bl=np.ones((32, 6), np.int32))
    batch = jax.device_put(batch, sharding.named_sharding(mesh, ("batch", None)))
    return mesh, graphdef, params, batch


def test_micro_batched_logprobs_equal_one_pass(sharded_policy):
    mesh, graphdef, params, batch = sharded_policy
    with jax.set_mesh(mesh):
        one_pass = make_logprob_fn(graphdef)
        expected = np.asarray(one_pass(params, batch))
        baseline = _collectives(one_pass.lower(params, batch).compile())
        for rows_per_pass in (8, 16, 32, 64):
            fn = make_logprob_fn(graphdef, rows_per_pass)
            logp = fn(params, batch)
            assert logp.shape == (32, 6) and logp.sharding.spec == jax.sharding.PartitionSpec(("data", "fsdp"))
            np.testing.assert_allclose(np.asarray(logp), expected, atol=1e-5)
            # Pass k takes rows j K + k: every device keeps its own rows, no extra communication.
            assert _collectives(fn.lower(params, batch).compile()) <= baseline


def test_micro_batch_sizes_are_checked(sharded_policy):
    mesh, graphdef, params, batch = sharded_policy
    with jax.set_mesh(mesh):
        with pytest.raises(ValueError, match="32 rows.*rows_per_pass=24"):
            make_logprob_fn(graphdef, 24)(params, batch)
        with pytest.raises(ValueError, match="rows_per_pass=4 .*8 batch shards"):
            make_logprob_fn(graphdef, 4)(params, batch)
    PrimeConfig(collect=CollectConfig(num_samples=4, batch_prompts=8, oversample=2.0), prm_mini_batch=8,
                policy_mini_batch=8, logprob_rows_per_pass=16, prm_mode="none")
    with pytest.raises(ValueError, match="logprob_rows_per_pass=24 .*64 rows of a rollout round"):
        PrimeConfig(collect=CollectConfig(num_samples=4, batch_prompts=8, oversample=2.0), prm_mini_batch=8,
                    policy_mini_batch=8, logprob_rows_per_pass=24)
    with pytest.raises(ValueError, match="logprob_rows_per_pass=12 .*32 rows of the batch"):
        PrimeConfig(collect=CollectConfig(num_samples=4, batch_prompts=8, rollout_prompts=3), prm_mini_batch=8,
                    policy_mini_batch=8, logprob_rows_per_pass=12, prm_mode="before")


def test_logits_chunk_and_remat_barriers_are_compute_settings_not_hf_fields(tmp_path):
    config = CONFIG.replace(logits_chunk=512, remat=True)
    assert "logits_chunk" not in config.to_hf() and "remat" not in config.to_hf()
    save_pretrained(Transformer(config, rngs=nnx.Rngs(0)), tmp_path)
    assert "logits_chunk" not in (tmp_path / "config.json").read_text()
    mesh = sharding.make_mesh(sharding.MeshConfig(data=8))
    assert build_model(ModelSource(hf_path=str(tmp_path)), mesh, seed=0).config.logits_chunk is None
    loaded = build_model(ModelSource(hf_path=str(tmp_path), logits_chunk=7, remat_barriers=True), mesh, seed=0)
    assert loaded.config.logits_chunk == 7 and loaded.config.remat_barriers is True
    assert build_model(ModelSource(config=CONFIG, remat_barriers=False), mesh, seed=0).config.remat_barriers is False
    assert "remat_barriers" not in config.replace(remat_barriers=True).to_hf()
    with pytest.raises(ValueError, match="logits_chunk=-1"):
        CONFIG.replace(logits_chunk=-1)
    with pytest.raises(ValueError, match="remat_barriers='yes'"):
        CONFIG.replace(remat_barriers="yes")


def test_remat_model_log_probs_in_passes():
    """A rematerialised model (ModelSource.remat, as the shipped TPU configs set it) runs the
    log-prob pass in several passes (lax.map) and gives the one-pass log-probs."""
    config = ModelConfig(architecture="qwen2", vocab_size=64, hidden_size=32, intermediate_size=64, num_layers=2,
                         num_heads=4, num_kv_heads=2, head_dim=8, max_position_embeddings=64,
                         tie_word_embeddings=True, bos_token_id=1, eos_token_id=2, pad_token_id=0)
    mesh = sharding.make_mesh()
    role = Role.of(build_model(ModelSource(config=config, remat=True), mesh, seed=0))
    assert role.module().config.remat
    rows = 2 * sharding.data_parallel_size(mesh)
    tokens = jnp.asarray(np.random.default_rng(0).integers(3, 60, size=(rows, 12)), jnp.int32)
    batch = SequenceBatch(tokens_bs=tokens, attention_mask_bs=jnp.ones_like(tokens),
                          response_mask_bl=jnp.ones((rows, 5), jnp.int32))
    with jax.set_mesh(mesh):
        one_pass = make_logprob_fn(role.graphdef)(role.params, sharding.place(batch, mesh))
        two_passes = make_logprob_fn(role.graphdef, rows // 2)(role.params, sharding.place(batch, mesh))
    np.testing.assert_allclose(np.asarray(two_passes), np.asarray(one_pass), atol=1e-6)
