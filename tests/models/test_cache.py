"""KV-cache decoding: prefill + step-by-step decode reproduces the full forward."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from prime_jax.models import KVCache, PRESETS, cache_bytes, from_pretrained

PROMPT, STEPS = 6, 4


def _batch(vocab, seed=0):
    rng = np.random.RandomState(seed)
    prompt_mask = np.ones((3, PROMPT), np.int32)
    prompt_mask[0, :3] = 0  # left padding
    prompt_mask[2, :1] = 0
    prompt = np.where(prompt_mask == 1, rng.randint(3, vocab, (3, PROMPT)), 0)
    continuation = rng.randint(3, vocab, (3, STEPS))
    tokens = np.concatenate([prompt, continuation], axis=1)
    mask = np.concatenate([prompt_mask, np.ones_like(continuation)], axis=1)
    return [jnp.asarray(x, jnp.int32) for x in (prompt, prompt_mask, continuation, tokens, mask)]


@pytest.mark.parametrize("family", ["llama", "qwen3"])
def test_prefill_and_decode_match_full_forward(hf_checkpoints, family):
    model = from_pretrained(hf_checkpoints[(family, False)][1])
    prompt, prompt_mask, continuation, tokens, mask = _batch(model.config.vocab_size)
    full = np.asarray(model(tokens, attention_mask_bt=mask))
    real = np.asarray(mask, bool)

    cache = model.init_cache(3, PROMPT + STEPS + 2)
    assert isinstance(cache, KVCache) and cache.keys[0].dtype == jnp.float32
    logits, cache = model(prompt, attention_mask_bt=prompt_mask, cache=cache)
    assert int(cache.index) == PROMPT
    err = np.abs(np.asarray(logits) - full[:, :PROMPT])[real[:, :PROMPT]].max()
    assert err <= 1e-5, f"prefill differs by {err}"
    for i in range(STEPS):
        step, cache = model(continuation[:, i:i + 1], cache=cache)
        assert step.shape == (3, 1, model.config.vocab_size)
        np.testing.assert_allclose(np.asarray(step[:, 0]), full[:, PROMPT + i], atol=1e-5)
    assert int(cache.index) == PROMPT + STEPS


def test_decode_inside_jit_and_while_loop(hf_checkpoints):
    model = from_pretrained(hf_checkpoints[("qwen2", True)][1])
    prompt, prompt_mask, continuation, tokens, mask = _batch(model.config.vocab_size, seed=1)
    full = np.asarray(model(tokens, attention_mask_bt=mask))

    @nnx.jit
    def prefill_and_decode(model, prompt, prompt_mask, continuation):
        cache = model.init_cache(3, 16)
        # static cache_index=0: the prefill attends over its own 6 slots, not all 16
        _, cache = model(prompt, attention_mask_bt=prompt_mask, cache=cache, cache_index=0)

        def body(carry):
            i, cache, out_btv = carry
            token_b1 = jax.lax.dynamic_slice_in_dim(continuation, i, 1, axis=1)
            logits_b1v, cache = model(token_b1, attention_mask_bt=jnp.ones_like(token_b1),
                                      cache=cache)
            return i + 1, cache, jax.lax.dynamic_update_slice_in_dim(out_btv, logits_b1v, i, 1)

        out = jnp.zeros((3, STEPS, model.config.vocab_size), jnp.float32)
        _, cache, out = jax.lax.while_loop(lambda c: c[0] < STEPS, body, (0, cache, out))
        return out, cache

    out, cache = prefill_and_decode(model, prompt, prompt_mask, continuation)
    np.testing.assert_allclose(np.asarray(out), full[:, PROMPT:], atol=1e-5)
    assert int(cache.index) == PROMPT + STEPS
    np.testing.assert_array_equal(np.asarray(cache.mask_bs[:, :PROMPT + STEPS]),
                                  np.asarray(mask, bool))
    assert not np.asarray(cache.mask_bs[:, PROMPT + STEPS:]).any()


def test_explicit_cache_index_and_positions(hf_checkpoints):
    model = from_pretrained(hf_checkpoints[("qwen3", True)][1])
    prompt, prompt_mask, continuation, tokens, mask = _batch(model.config.vocab_size, seed=2)
    full = np.asarray(model(tokens, attention_mask_bt=mask))
    cache = model.init_cache(3, PROMPT + STEPS)
    _, cache = model(prompt, attention_mask_bt=prompt_mask, cache=cache, cache_index=0)
    positions = np.maximum(np.asarray(mask).cumsum(-1) - 1, 0)
    # two tokens at once at an explicit slot, with explicit positions
    logits, cache = model(continuation[:, :2], positions_bt=jnp.asarray(positions[:, 6:8]),
                          cache=cache, cache_index=jnp.int32(PROMPT))
    np.testing.assert_allclose(np.asarray(logits), full[:, PROMPT:PROMPT + 2], atol=1e-5)
    assert int(cache.index) == PROMPT + 2
    with pytest.raises(ValueError, match=r"cache_index=9 \+ 2 new tokens does not fit.*max_len=10"):
        model(continuation[:, :2], cache=cache, cache_index=9)



def test_bfloat16_cache(hf_checkpoints):
    model = from_pretrained(hf_checkpoints[("llama", False)][1])
    prompt, prompt_mask, continuation, tokens, mask = _batch(model.config.vocab_size, seed=3)
    full = np.asarray(model(tokens, attention_mask_bt=mask))
    cache = model.init_cache(3, 12, dtype=jnp.bfloat16)
    assert cache.values[1].dtype == jnp.bfloat16
    _, cache = model(prompt, attention_mask_bt=prompt_mask, cache=cache)
    step, cache = model(continuation[:, :1], cache=cache)
    assert cache.keys[0].dtype == jnp.bfloat16
    np.testing.assert_allclose(np.asarray(step[:, 0]), full[:, PROMPT], atol=0.05)


def test_cache_bytes_formula():
    c = PRESETS["qwen2.5-math-7b"]
    nbytes = cache_bytes(num_layers=c.num_layers, batch_size=64, max_len=4096,
                         num_kv_heads=c.num_kv_heads, head_dim=c.head_dim, dtype=jnp.bfloat16)
    assert nbytes == 2 * 28 * 64 * 4096 * 4 * 128 * 2 + 64 * 4096
    shapes = jax.eval_shape(lambda: KVCache.init(num_layers=2, batch_size=3, max_len=5,
                                                 num_kv_heads=2, head_dim=8))
    assert sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(shapes)) == cache_bytes(
        num_layers=2, batch_size=3, max_len=5, num_kv_heads=2, head_dim=8) + 4  # + int32 index


def test_the_model_never_names_a_cache_layout():
    """Issue 25 item 4: layouts own their reads and writes (``cache.begin`` / ``layer.attend`` /
    ``step.finish``); the model code tests no cache's type and imports no paged layout."""
    import pathlib
    import re

    import prime_jax.models.transformer as transformer

    folder = pathlib.Path(transformer.__file__).parent
    layouts = "KVCache|PagedKVCache|PagedLayer|DenseLayer|FreshKV|NoCache|tuple"
    for name in ("transformer.py", "layers.py"):
        source = (folder / name).read_text()
        assert not re.search(rf"isinstance\([^)]*(cache|kv)[^)]*,\s*\(?({layouts})", source), name
        imports = [line for line in source.splitlines() if line.startswith("from prime_jax.models.cache")]
        assert not any("Paged" in line for line in imports), (name, imports)


def test_a_cache_index_without_a_cache_is_refused():
    from prime_jax.models.cache import NoCache

    with pytest.raises(ValueError, match="cache_index=3 needs a cache"):
        NoCache().begin(jnp.ones((1, 2), bool), 3)
