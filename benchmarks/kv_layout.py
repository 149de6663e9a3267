"""Does a paged (block-allocated) KV cache pay? Its two possible gains, measured and counted (issue 16).

    python benchmarks/kv_layout.py [--write /tmp/kv_layout.md]     # ~2-4 min on 2 cores

A dense cache gives every row ``P + L - 1`` slots (the continuous engine's slots, and the last
decode segment of the static engine); a block layout gives a row ``ceil(len / block)`` blocks of
``block`` slots from a shared pool, as many as its prompt and response so far need. It can win:

1. **time**, if a decode step's cost grows with the slots it reads. Measured here on this CPU: one
   jitted decode step of Qwen2.5-0.5B-wide layers (width 896, 14 / 2 heads x 64, MLP 4864, 2
   layers, the real 151,936-token head) for 16 rows over caches of S slots; the step time's growth
   with S is what reading fewer slots could save;
2. **memory**, by holding only the slots rows use, so more rows fit a device. Counted (not
   measured) for ``configs/prime_qwen2.5_0.5b.gin``'s rollout (P = 1024, L = 3072, bf16 cache, 24
   layers x 2 kv heads x 64) under long-tailed response lengths: log-normal with median
   ``--median`` and sigma ``--sigma``, clipped to [1, L], prompts of ``--prompt-median`` tokens.
   Bandwidth follows the same ratio where attention reads every slot of a row.

Ends with ``kv_layout: cpu_step_growth_S4096_vs_S256=<x>x dense/block_memory=<y>x``.
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from prime_jax.models import ModelConfig, Transformer

from machine import cpu_line, date_line, load_average

ROWS = 16


def decode_step_seconds(policy: Transformer, slots: int, repeats: int) -> float:
    """Best-of-``repeats`` seconds of one jitted decode step of ``ROWS`` rows over ``slots`` slots."""
    graphdef, state = nnx.split(policy)

    @jax.jit
    def step(state, cache, token_b1, position_b1):
        model = nnx.merge(graphdef, state)
        return model(token_b1, positions_bt=position_b1, cache=cache, cache_index=slots - 1)

    cache = policy.init_cache(ROWS, slots, dtype=jnp.float32)
    cache = cache.replace(mask_bs=jnp.ones_like(cache.mask_bs))  # every slot holds a token
    token_b1 = jnp.ones((ROWS, 1), jnp.int32)
    position_b1 = jnp.full((ROWS, 1), slots - 1, jnp.int32)
    jax.block_until_ready(step(state, cache, token_b1, position_b1))
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(step(state, cache, token_b1, position_b1))
        best = min(best, time.perf_counter() - t0)
    return best


def memory_ratio(args, rng, block: int) -> tuple[float, float]:
    """(dense slots / block-layout slots, mean used slots per row) for the 0.5B rollout's shapes."""
    prompt, new, rows = 1024, 3072, 100_000
    resp_r = np.clip(np.round(rng.lognormal(np.log(args.median), args.sigma, rows)), 1, new)
    prompt_r = np.clip(np.round(rng.lognormal(np.log(args.prompt_median), 0.5, rows)), 1, prompt)
    used_r = prompt_r + resp_r - 1
    dense = rows * (prompt + new - 1)
    paged = np.sum(np.ceil(used_r / block) * block)
    return dense / paged, float(np.mean(used_r))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slots", type=int, nargs="+", default=[256, 1024, 2048, 4096])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--median", type=float, default=600.0)
    parser.add_argument("--sigma", type=float, default=0.8)
    parser.add_argument("--prompt-median", type=float, default=200.0)
    parser.add_argument("--write", help="also write the markdown section to this file")
    args = parser.parse_args(argv)
    config = ModelConfig(vocab_size=151936, hidden_size=896, intermediate_size=4864, num_layers=2,
                         num_heads=14, num_kv_heads=2, head_dim=64, tie_word_embeddings=True)
    policy = Transformer(config, rngs=nnx.Rngs(0))
    times = {s: decode_step_seconds(policy, s, args.repeats) for s in args.slots}
    base = times[args.slots[0]]
    lines = [f"| cache slots S | decode step, {ROWS} rows (ms) | vs S = {args.slots[0]} |", "|---:|---:|---:|"]
    lines += [f"| {s} | {1e3 * t:.1f} | {t / base:.2f}x |" for s, t in times.items()]
    rng = np.random.RandomState(0)
    kv_bytes_per_slot = 2 * 24 * 2 * 64 * 2  # K and V, 24 layers, 2 kv heads x 64, bf16
    lines += ["", "| block size | dense / block-layout KV bytes (= rows that fit, x) | mean used slots per row |",
              "|---:|---:|---:|"]
    ratios = {}
    for block in (16, 64, 256):
        ratios[block], used = memory_ratio(args, rng, block)
        lines.append(f"| {block} | {ratios[block]:.2f}x | {used:.0f} of {1024 + 3072 - 1} |")
    table = "\n".join(lines)
    growth = times[args.slots[-1]] / base
    summary = (f"kv_layout: cpu_step_growth_S{args.slots[-1]}_vs_S{args.slots[0]}={growth:.2f}x "
               f"dense/block_memory={ratios[16]:.2f}x")
    notes = (f"KV bytes per slot (0.5B, bf16): {kv_bytes_per_slot:,}; a dense row of 4,095 slots: "
             f"{kv_bytes_per_slot * 4095 / 2**20:.1f} MiB.")
    print(table)
    print(notes)
    print(summary)
    if args.write:
        with open(args.write, "w") as f:
            f.write(f"## kv_layout: does a paged KV cache pay? (Qwen2.5-0.5B widths)\n"
                    f"- command: `python benchmarks/kv_layout.py`\n- machine: {cpu_line()}, load "
                    f"{load_average()}; jax {jax.__version__}\n{date_line()}\n- lengths: response "
                    f"log-normal median {args.median:g} sigma {args.sigma:g} clipped to [1, 3072], "
                    f"prompt median {args.prompt_median:g} clipped to [1, 1024] (assumed, not PRIME's "
                    f"logged lengths)\n\n{table}\n\n{notes}\n\n{summary}\n")


if __name__ == "__main__":
    main()
