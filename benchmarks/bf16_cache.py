"""Why a bfloat16 KV cache changes greedy tokens, and when it does not (issue 16).

    python benchmarks/bf16_cache.py [--write /tmp/bf16_cache.md]     # ~1-2 min on 2 cores

The model of ``benchmarks/sampling.py`` (random Qwen2-shaped, 6 layers x 256, vocab 2048, batch
32, 32-token prompts, 96 new tokens, greedy, no EOS). For each compute dtype of the model
(float32, bfloat16 with float32 weights) it samples greedily with a float32 cache and with a
bfloat16 cache and reports:

* token equality (the share of the B x L tokens that agree), rows equal end to end, and the mean
  position of a row's first differing token (L when none);
* ``|d logp|``: the largest change of a chosen token's log-probability on the steps before a
  row's first difference (the cache's rounding seen at the output);
* ``gap``: the float32-cache run's top-1 minus top-2 log-probability at the step where a row first
  differs, next to the median gap over all steps.

A greedy token flips when the cache's rounding moves the logits by more than the gap between the
two best tokens; every later token of that row then continues a different text, so token
equality measures how early rows flip, not how many steps are perturbed. With a bfloat16 model
the keys and values are computed in bfloat16 before they are stored, and attention reads the cache
back in the compute dtype, so a bfloat16 cache stores exactly the numbers a float32 cache holds:
tokens and log-probs are then bit-identical (the last column of the table).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import types

import jax
import jax.numpy as jnp
import numpy as np

from prime_jax.models import from_pretrained
from prime_jax.rollout import SamplingConfig, join_prompt_and_response, sample

from machine import cpu_line, date_line, load_average
from sampling import make_model


def first_difference(a_bl: np.ndarray, b_bl: np.ndarray) -> np.ndarray:
    """Per row, the first column where the two differ (L when none)."""
    differ_bl = a_bl != b_bl
    return np.where(differ_bl.any(-1), differ_bl.argmax(-1), a_bl.shape[1])


def compare(policy, ids, mask, new: int) -> dict:
    """Greedy float32-cache vs bfloat16-cache rollouts of ``policy``: the numbers of the table."""
    key = jax.random.key(0)
    runs = {dtype: sample(policy, ids, mask, key=key, config=SamplingConfig(
        max_new_tokens=new, temperature=0.0, cache_dtype=dtype)) for dtype in ("float32", "bfloat16")}
    f32, bf16 = runs["float32"], runs["bfloat16"]
    tok32, tok16 = np.asarray(f32.tokens), np.asarray(bf16.tokens)
    first_b = first_difference(tok32, tok16)
    before_bl = np.arange(new)[None] < first_b[:, None]
    dlogp = np.abs(np.asarray(f32.logprobs) - np.asarray(bf16.logprobs))
    tokens_bt, mask_bt = join_prompt_and_response(ids, mask, f32)
    logp_btv = jax.nn.log_softmax(policy(tokens_bt, attention_mask_bt=mask_bt), axis=-1)
    top2_bl2 = jax.lax.top_k(np.asarray(logp_btv)[:, ids.shape[1] - 1:-1], 2)[0]
    gap_bl = np.asarray(top2_bl2[..., 0] - top2_bl2[..., 1])
    flipped_b = first_b < new
    return dict(
        equal=float(np.mean(tok32 == tok16)), rows_equal=int(np.sum(~flipped_b)), rows=len(first_b),
        first=float(np.mean(first_b)), dlogp=float(dlogp[before_bl].max(initial=0.0)),
        gap_at_flip=(float(np.median(gap_bl[flipped_b, first_b[flipped_b]])) if flipped_b.any()
                     else float("nan")),
        gap_median=float(np.median(gap_bl)),
        bit_equal=bool(np.array_equal(tok32, tok16)
                       and np.array_equal(np.asarray(f32.logprobs), np.asarray(bf16.logprobs))))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--prompt", type=int, default=32)
    parser.add_argument("--new", type=int, default=96)
    parser.add_argument("--write", help="also write the markdown section to this file")
    args = parser.parse_args(argv)
    shape = types.SimpleNamespace(layers=6, width=256, vocab=2048)
    rng = np.random.RandomState(0)
    ids = jnp.asarray(rng.randint(3, shape.vocab, (args.batch, args.prompt)), jnp.int32)
    mask = jnp.ones_like(ids)
    results = {}
    with tempfile.TemporaryDirectory() as directory:
        make_model(shape, directory)
        for dtype in ("float32", "bfloat16"):
            policy = from_pretrained(directory, dtype=jnp.dtype(dtype), param_dtype=jnp.float32)
            results[dtype] = compare(policy, ids, mask, args.new)
    lines = ["| model compute dtype | tokens equal | rows equal | mean first difference | "
             "max abs d logp before it | median gap at the flip | median gap, all steps | "
             "bit-identical |", "|---|---:|---:|---:|---:|---:|---:|---|"]
    for dtype, r in results.items():
        lines.append(f"| {dtype} | {r['equal']:.1%} | {r['rows_equal']}/{r['rows']} | "
                     f"{r['first']:.1f} of {args.new} | {r['dlogp']:.2e} | {r['gap_at_flip']:.2e} | "
                     f"{r['gap_median']:.2e} | {'yes' if r['bit_equal'] else 'no'} |")
    table = "\n".join(lines)
    summary = (f"bf16_cache: float32_model_equal={results['float32']['equal']:.3f} "
               f"bfloat16_model_equal={results['bfloat16']['equal']:.3f} "
               f"bfloat16_model_bit_identical={'yes' if results['bfloat16']['bit_equal'] else 'no'}")
    print(table)
    print(summary)
    if args.write:
        with open(args.write, "w") as f:
            f.write(f"## bf16 KV cache vs float32 cache, greedy (6 layers x 256, vocab 2048, batch "
                    f"{args.batch}, {args.prompt}-token prompts, {args.new} new tokens)\n"
                    f"- command: `python benchmarks/bf16_cache.py`\n- machine: {cpu_line()}, "
                    f"load {load_average()}; jax {jax.__version__}\n{date_line()}\n\n"
                    f"{table}\n\n{summary}\n")
    return results


if __name__ == "__main__":
    sys.exit(main() and 0)
