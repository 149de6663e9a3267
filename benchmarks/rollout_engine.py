"""Rollout engine: continuous vs static batching, shared-prefix vs plain sampling (issue 16).

    nice python benchmarks/rollout_engine.py                 # ~2-3 min on 2 loaded cores
    python benchmarks/rollout_engine.py --repeats 11 --write /tmp/rollout_engine_results.md

One random-weight model (``ModelConfig``: 2 layers x 128, 4 heads / 2 kv heads, vocabulary
512), float32, with a switchable logit bias that forces per-request lengths (``Countdown``):
after input token t > 1 the token t - 1 gets ``+bias``, after token 1 the EOS id 0 does. A
prompt ending in token t therefore answers ``t-1, t-2, ..., 1, EOS``: exactly t tokens (truncated
at L if t > L). The model still runs every layer; only the choice is steered.

* continuous vs static: R requests whose lengths t are drawn from a log-normal (median
  ``--median-len``, sigma ``--sigma``, clipped to [1, L]), greedy. Static = ``sample`` on
  consecutive chunks of S requests (each chunk decodes until its longest row ends); continuous
  = ``sample_continuous`` with S slots (same cache rows). Ratio = static time / continuous time.
* shared prefix vs plain, bias off, temperature 1, no EOS: n = 4 samples of G prompts, and
  N = 8 Monte-Carlo completions of G long step prefixes. Plain = ``sample`` on
  ``repeat_prompts`` (G * n prefills); shared = ``sample(..., num_samples=n)`` (G prefills). Ratio = plain time / shared time; the
  summary line reports the N = 8 completions case (the issue's goal), the table both.
* paged KV: the continuous run's slots over a shared pool of ``--block``-slot KV blocks holding
  100% and 25% of the dense pool's slots (``sample_paged``): time against continuous, the most
  slots held at once and the preemptions the small pool forces.
* equality: the timed runs' tokens (continuous vs static greedy; shared vs plain sampled with
  the same key) and a greedy check with the bias off (random-model tokens, EOS rarely) on small
  shapes: continuous (more requests than slots) and shared vs ``sample``.

Times: best of ``--repeats`` calls after one warm-up call (which compiles), the two sides of
each ratio alternating call by call. Ends with the line
``rollout_engine: continuous/static=<x>x shared_prefix/plain=<y>x greedy_equal=<yes|no>``.
``--write PATH`` also writes the markdown section (command, machine, date, table, summary).
"""

from __future__ import annotations

import argparse
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from prime_jax.models import ModelConfig, Transformer
from prime_jax.rollout import SamplingConfig, repeat_prompts, sample, sample_continuous, sample_paged
from prime_jax.rollout.paged import blocks_for

from machine import cpu_line, date_line, load_average

EOS = 0


class Countdown(Transformer):
    """The transformer plus ``bias * onehot(next_v)`` on its logits, ``next = t - 1 if t > 1 else
    EOS`` for input token t. The input id rides along as one extra hidden channel (so prefill's
    ``logits(hidden_states(...)[:, -1:])`` and decode's ``__call__`` both see it); ``bias`` is
    state, so bias 0 (the plain model) reuses the same compiled programs."""

    def __init__(self, config: ModelConfig, *, bias: float, rngs: nnx.Rngs):
        super().__init__(config, rngs=rngs)
        self.bias = nnx.Variable(jnp.float32(bias))

    def hidden_states(self, input_ids_bt, **kwargs):
        h_btd, cache = super().hidden_states(input_ids_bt, **kwargs)
        return jnp.concatenate([h_btd, input_ids_bt[..., None].astype(h_btd.dtype)], -1), cache

    def logits(self, h_btd):
        logits_btv = super().logits(h_btd[..., :-1])
        prev_bt = h_btd[..., -1].astype(jnp.int32)
        next_bt = jnp.where(prev_bt > 1, prev_bt - 1, EOS)
        return logits_btv + self.bias[...] * jax.nn.one_hot(next_bt, logits_btv.shape[-1])


def timed_pair(fn_a, fn_b, repeats: int):
    """[(first-call seconds, best of ``repeats`` later calls, last result)] for ``fn_a``, ``fn_b``.

    The later calls alternate a, b, a, b, ...: on shared, loaded cores a burst of load then
    slows both sides instead of one.
    """
    stats = []
    for fn in (fn_a, fn_b):
        t0 = time.perf_counter()
        out = jax.block_until_ready(fn())
        stats.append([time.perf_counter() - t0, float("inf"), out])
    for _ in range(repeats):
        for st, fn in zip(stats, (fn_a, fn_b)):
            t0 = time.perf_counter()
            st[2] = jax.block_until_ready(fn())
            st[1] = min(st[1], time.perf_counter() - t0)
    return [tuple(st) for st in stats]


def random_prompts(rng, rows: int, length: int, vocab: int, last=None):
    """Left-padded (rows, length) prompts of 3/4 to full length; last token ``last`` if given."""
    keep_r = rng.randint(3 * length // 4, length + 1, rows)
    mask_rp = (np.arange(length)[None, :] >= length - keep_r[:, None]).astype(np.int32)
    ids_rp = rng.randint(2, vocab, (rows, length))
    if last is not None:
        ids_rp[:, -1] = last
    return (ids_rp * mask_rp).astype(np.int32), mask_rp


def same(a, b) -> bool:
    return all(np.array_equal(np.asarray(getattr(a, k)), np.asarray(getattr(b, k)))
               for k in ("tokens", "mask", "truncated"))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--requests", type=int, default=64)
    ap.add_argument("--slots", type=int, default=16)
    ap.add_argument("--max-new", type=int, default=256)
    ap.add_argument("--median-len", type=float, default=24.0)
    ap.add_argument("--sigma", type=float, default=1.0)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--block", type=int, default=16, help="KV block size of the paged runs")
    ap.add_argument("--write", default=None, help="also write the markdown section here")
    args = ap.parse_args(argv)
    vocab, prompt_len = 512, 16
    config = ModelConfig(vocab_size=vocab, hidden_size=128, intermediate_size=384, num_layers=2,
                         num_heads=4, num_kv_heads=2, head_dim=32)
    policy = Countdown(config, bias=30.0, rngs=nnx.Rngs(0))
    plain_model = nnx.clone(policy)
    plain_model.bias[...] = jnp.float32(0.0)
    rng = np.random.RandomState(0)
    key = jax.random.key(0)
    rows, equal = [], {}

    # Continuous vs static on long-tailed lengths.
    r, s, steps = args.requests, args.slots, args.max_new
    target_r = np.clip(np.round(rng.lognormal(np.log(args.median_len), args.sigma, r)), 1,
                       min(steps, vocab - 1)).astype(np.int32)
    ids_rp, mask_rp = random_prompts(rng, r, prompt_len, vocab, last=target_r)
    greedy = SamplingConfig(max_new_tokens=steps, temperature=0.0, eos_id=EOS)

    def static():
        return [sample(policy, ids_rp[i:i + s], mask_rp[i:i + s], key=key, config=greedy)
                for i in range(0, r, s)]

    (first_s, t_static, outs), (first_c, t_cont, cont) = timed_pair(
        static, lambda: sample_continuous(policy, ids_rp, mask_rp, key=key, config=greedy,
                                          num_slots=s), args.repeats)
    lengths = np.asarray(cont.lengths)
    expected = np.minimum(target_r, steps)
    static_steps = sum(int(np.max(lengths[i:i + s])) for i in range(0, r, s))
    assert np.array_equal(lengths, expected), "the countdown bias did not set the lengths"
    equal["continuous (timed, countdown)"] = all(
        same(o, jax.tree.map(lambda x, i=i: x[i:i + s], cont)) for o, i in zip(outs, range(0, r, s)))
    p50, p90 = np.percentile(lengths, [50, 90])
    spread = f"lengths p50/p90/max {p50:.0f}/{p90:.0f}/{lengths.max()}"
    rows.append((f"static `sample`, {r} requests in chunks of {s}, {spread}", t_static, first_s - t_static,
                 f"{static_steps} = sum of chunk max lengths"))
    rows.append((f"continuous, {s} slots", t_cont, first_c - t_cont,
                 f"{int(np.ceil(lengths.sum() / s))} = sum of lengths / slots"))
    cont_ratio = t_static / t_cont

    # Paged KV: the same slots over a shared pool of blocks, a fraction of the dense slots.
    dense_slots = s * (prompt_len + steps - 1)
    for share in (1.0, 0.25):
        blocks = max(blocks_for(prompt_len + steps - 1, args.block), int(share * dense_slots) // args.block)
        (_, t_c, _), (first_g, t_paged, (paged, stats)) = timed_pair(
            lambda: sample_continuous(policy, ids_rp, mask_rp, key=key, config=greedy, num_slots=s),
            lambda blocks=blocks: sample_paged(policy, ids_rp, mask_rp, key=key, config=greedy, num_slots=s,
                                               num_blocks=blocks, block_size=args.block, with_stats=True),
            args.repeats)
        equal[f"paged, pool {share:.0%} of the dense slots (timed, countdown)"] = same(cont, paged)
        rows.append((f"paged, {s} slots, pool {blocks} blocks x {args.block} = {share:.0%} of the dense "
                     f"{dense_slots} slots", t_paged, first_g - t_paged,
                     f"{t_c / t_paged:.2f}x continuous; peak {int(stats.peak_blocks) * args.block} slots held, "
                     f"{int(stats.preemptions)} preemptions"))

    # Shared prefix vs plain: n = 4 samples, N = 8 MC completions of long prefixes.
    ratios = {}
    for label, g, n, p, new in (("n = 4 samples", 16, 4, 64, 64),
                                ("N = 8 MC completions", 8, 8, 192, 32)):
        ids_gp, mask_gp = random_prompts(rng, g, p, vocab)
        sampled = SamplingConfig(max_new_tokens=new, temperature=1.0)
        rep = repeat_prompts(ids_gp, mask_gp, n)
        (first_p, t_plain, plain), (first_h, t_shared, shared) = timed_pair(
            lambda: sample(plain_model, *rep, key=key, config=sampled),
            lambda: sample(plain_model, ids_gp, mask_gp, num_samples=n, key=key, config=sampled),
            args.repeats)
        equal[f"shared, {label} (timed, T=1)"] = same(plain, shared)
        ratios[label] = t_plain / t_shared
        shape = f"{g} prompts x {n}, P={p}, L={new}"
        rows.append((f"plain `sample`, {label}: {shape}", t_plain, first_p - t_plain,
                     f"prefill {g * n * p} positions"))
        rows.append((f"shared prefix, {label}", t_shared, first_h - t_shared,
                     f"prefill {g * p} positions"))

    # Greedy with the bias off (random-model tokens), small shapes.
    ids_sp, mask_sp = random_prompts(rng, 12, prompt_len, vocab)
    small = SamplingConfig(max_new_tokens=24, temperature=0.0, eos_id=(EOS, 1, 2, 3, 4))
    ref = sample(plain_model, ids_sp, mask_sp, key=key, config=small)
    equal["continuous, bias off (12 requests, 4 slots)"] = same(ref, sample_continuous(
        plain_model, ids_sp, mask_sp, key=key, config=small, num_slots=4))
    equal["shared, bias off (3 prompts x 4)"] = same(
        sample(plain_model, *repeat_prompts(ids_sp[:3], mask_sp[:3], 4), key=key, config=small),
        sample(plain_model, ids_sp[:3], mask_sp[:3], num_samples=4, key=key, config=small))

    lines = ["| run | best s | compile s | note |", "|---|---:|---:|---|"]
    lines += [f"| {name} | {best:.3f} | {comp:.1f} | {note} |" for name, best, comp, note in rows]
    lines += ["", "| equality with `sample` (tokens, mask, truncated) | equal |", "|---|---|"]
    lines += [f"| {name} | {'yes' if ok else 'NO'} |" for name, ok in equal.items()]
    lines += ["", f"continuous/static = {cont_ratio:.2f}x; shared/plain: "
              + ", ".join(f"{k} {v:.2f}x" for k, v in ratios.items())]
    summary = (f"rollout_engine: continuous/static={cont_ratio:.2f}x "
               f"shared_prefix/plain={ratios['N = 8 MC completions']:.2f}x "
               f"greedy_equal={'yes' if all(equal.values()) else 'no'}")
    if args.write:
        flags = sys.argv[1:] if argv is None else argv
        command = "nice python benchmarks/rollout_engine.py " + " ".join(flags)
        section = ["## rollout_engine: continuous batching and shared prefixes (2 layers x 128, "
                   "vocab 512, float32)",
                   f"- command: `{command.strip()}`",
                   f"- machine: {cpu_line()} (2-core CPU, loaded: load average {load_average()} "
                   f"at the end, shared with other jobs); jax {jax.__version__}",
                   date_line(),
                   f"- seconds = best of {args.repeats} runs after a warm-up run; compile = first "
                   "call minus best", "", *lines, "", "```", summary, "```", ""]
        with open(args.write, "w") as f:
            f.write("\n".join(section))
    print("\n".join(lines))
    print(summary)


if __name__ == "__main__":
    main()
