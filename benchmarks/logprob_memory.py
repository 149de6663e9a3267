"""Log-prob memory: compiled scratch bytes and time of unchunked vs chunked vocabulary logits.

    python benchmarks/logprob_memory.py                  # Qwen2.5-0.5B head, 1 layer, B=1, T=2048
    python benchmarks/logprob_memory.py --chunks 128 512 --repeats 1 --no-append

A Qwen2.5-0.5B-shaped model (width 896, vocab 151936, tied embeddings, 14 heads over 2 kv heads;
``--layers`` decoder blocks, random init) scores B rows of T tokens with
``token_logprobs_and_entropy`` under ``ModelConfig.logits_chunk`` = None (the baseline: all T
positions' float32 logits at once) and each of ``--chunks``. Two programs per setting: the
forward (old/ref/PRM log-probs) and forward + backward of ``sum(logp) + sum(entropy)`` with
respect to all weights (the policy/PRM update). Memory is XLA's compiled
``memory_analysis().temp_size_in_bytes`` (scratch, excluding weights, inputs and outputs); time
is the best of ``--repeats`` calls of the compiled program (compilation excluded), the programs
called in turn each round. Both are reported as ratios against the baseline measured in the same
run. Prints a table and appends it
to experiments/LOG.md.
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from prime_jax.models import PRESETS, Transformer, token_logprobs_and_entropy

from machine import RESULTS_LOG, cpu_name, date_line, load_average

MIB = 2**20


def programs(config, tokens_bt):
    """{"forward": (compiled, params), "forward+backward": (compiled, params)} for one config."""
    graphdef, params = nnx.split(Transformer(config, rngs=nnx.Rngs(0)))

    def forward(p):
        return token_logprobs_and_entropy(nnx.merge(graphdef, p), tokens_bt)

    def loss(p):
        logp_bt, entropy_bt = forward(p)
        return jnp.sum(logp_bt) + jnp.sum(entropy_bt)

    return {name: (jax.jit(fn).lower(params).compile(), params)
            for name, fn in (("forward", forward), ("forward+backward", jax.grad(loss)))}


def time_round_robin(compiled: dict, repeats: int) -> tuple[dict, dict]:
    """({key: best wall seconds}, {key: first output}) over ``repeats`` rounds that call every
    program once in turn, so a load change on the shared cores hits all of them alike."""
    best, outputs = {}, {}
    for _ in range(repeats):
        for key, (program, params) in compiled.items():
            start = time.perf_counter()
            out = jax.block_until_ready(program(params))
            best[key] = min(best.get(key, float("inf")), time.perf_counter() - start)
            outputs.setdefault(key, out)
    return best, outputs


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=1)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--length", type=int, default=2048)
    parser.add_argument("--chunks", type=int, nargs="+", default=[256, 1024])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--no-append", action="store_true")
    args = parser.parse_args()

    config = PRESETS["qwen2.5-0.5b"].replace(num_layers=args.layers,
                                             max_position_embeddings=max(args.length, 32768))
    tokens_bt = jnp.asarray(np.random.RandomState(0).randint(
        0, config.vocab_size, (args.batch, args.length)), jnp.int32)
    compiled = {(name, chunk): program for chunk in [None, *args.chunks]
                for name, program in programs(config.replace(logits_chunk=chunk), tokens_bt).items()}
    seconds, outputs = time_round_robin(compiled, args.repeats)
    rows = []
    for (name, chunk), (program, _) in compiled.items():
        analysis = program.memory_analysis()
        temp = None if analysis is None else analysis.temp_size_in_bytes
        base = compiled[(name, None)][0].memory_analysis()
        base_temp = None if base is None else base.temp_size_in_bytes
        diff = max(float(jnp.max(jnp.abs(a - b))) for a, b in
                   zip(jax.tree.leaves(outputs[(name, chunk)]), jax.tree.leaves(outputs[(name, None)])))
        rows.append((name, chunk, temp, base_temp, seconds[(name, chunk)], seconds[(name, None)], diff))

    logits_mib = args.batch * args.length * config.vocab_size * 4 / MIB
    lines = [("| program | logits_chunk | temp MiB | temp vs unchunked | seconds | time vs unchunked | "
              "max abs diff vs unchunked |"), "|---|---|---|---|---|---|---|"]
    for name, chunk, temp, base_temp, wall, base_wall, diff in rows:
        memory = ("n/a", "n/a") if temp is None else (f"{temp / MIB:,.0f}", f"{temp / base_temp:.3f}x")
        lines.append(f"| {name} | {chunk or 'None'} | {memory[0]} | {memory[1]} | {wall:.2f} | "
                     f"{wall / base_wall:.2f}x | {diff:.1e} |")
    table = "\n".join(lines)
    print(table)
    if args.no_append:
        return
    defaults = {"layers": 1, "batch": 1, "length": 2048, "chunks": [256, 1024], "repeats": 2}
    flags = "".join(f" --{k} {' '.join(map(str, v)) if isinstance(v, list) else v}"
                    for k, v in vars(args).items() if k in defaults and v != defaults[k])
    header = (
        f"\n## logprob_memory: chunked vocabulary logits (Qwen2.5-0.5B head: width {config.hidden_size}, "
        f"vocab {config.vocab_size}, {args.layers} layer(s), B={args.batch}, T={args.length}, float32)\n"
        f"- command: `python benchmarks/logprob_memory.py{flags}`\n"
        f"- machine: {cpu_name()}, 2 cores (shared with other jobs; load average "
        f"{load_average()} at the end), {jax.device_count()} jax {jax.default_backend()} "
        f"device(s); jax {jax.__version__}\n"
        f"{date_line()}\n"
        f"- temp = XLA's compiled scratch bytes (weights, inputs and outputs excluded); one float32 "
        f"(B, T, V) logits buffer is {logits_mib:,.0f} MiB. seconds = best of {args.repeats} calls "
        f"of the compiled program, all programs called in turn each round; the diff column "
        f"compares outputs (log-probs and entropies, or gradients) with the unchunked program's\n\n")
    with RESULTS_LOG.open("a") as f:
        f.write(header + table + "\n")


if __name__ == "__main__":
    main()
