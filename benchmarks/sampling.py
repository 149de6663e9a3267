"""Rollout throughput: prime_jax ``rollout.sample`` vs transformers ``generate`` (torch, CPU).

    python benchmarks/sampling.py                 # 6 layers x 256, batch 32, 32 + 96 tokens
    python benchmarks/sampling.py --repeats 5 --no-append

Both sides run the same random-weight Qwen2-shaped model (written by transformers, loaded by
``prime_jax.models.from_pretrained``) on the same prompts, greedy, EOS disabled so every row
produces all new tokens; transformers uses ``use_cache=True`` and its default (sdpa) attention.
Times are the best of ``--repeats`` runs after one warm-up run (for JAX the warm-up includes
compilation, reported separately as first-call time minus best time). Systems run one after the
other: interleaving torch's and XLA's spin-waiting thread pools on 2 cores distorts both.
Greedy tokens of both sides are compared as a sanity check (a bf16 cache drifts from them).
The last row splits the host into ``--cpu-devices`` JAX CPU devices (``jax_num_cpu_devices``, what
``JAX_NUM_CPU_DEVICES`` sets) and lays the batch over them (a ``data`` mesh, weights replicated): the
way a JAX program uses several cores for independent rows; the other rows use the first device only.
Prints a table and appends it to experiments/LOG.md.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np
import torch
import transformers

from prime_jax import sharding
from prime_jax.models import from_pretrained
from prime_jax.rollout import SamplingConfig, sample

from machine import RESULTS_LOG, cpu_line, date_line, load_average



def make_model(args, directory):
    torch.manual_seed(0)
    config = transformers.Qwen2Config(
        vocab_size=args.vocab, hidden_size=args.width, intermediate_size=3 * args.width,
        num_hidden_layers=args.layers, num_attention_heads=4, num_key_value_heads=2,
        max_position_embeddings=512, tie_word_embeddings=False, rope_theta=10000.0,
        bos_token_id=1, eos_token_id=2, pad_token_id=0)
    model = transformers.AutoModelForCausalLM.from_config(config, dtype=torch.float32).eval()
    with torch.no_grad():  # larger weights than the default init: less tied, more varied logits
        for name, p in model.named_parameters():
            if not name.endswith("norm.weight"):
                p.copy_(0.05 * torch.randn_like(p))
    model.generation_config.eos_token_id = None
    model.save_pretrained(directory)
    return model


def run_all(fns: dict, repeats: int):
    """{name: (first-call seconds, best of ``repeats`` later calls, last result)}.

    One system at a time (torch's and XLA's thread pools spin-wait: interleaving them on two
    cores slowed torch down 40x).
    """
    results = {}
    for name, fn in fns.items():
        start = time.perf_counter()
        out = fn()
        first, best = time.perf_counter() - start, float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            out = fn()
            best = min(best, time.perf_counter() - start)
        results[name] = (first, best, out)
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=6)
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--vocab", type=int, default=2048)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--prompt", type=int, default=32)
    parser.add_argument("--new", type=int, default=96)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--cpu-devices", type=int, default=2,
                        help="JAX CPU devices for the data-parallel row (the cores to use)")
    parser.add_argument("--no-append", action="store_true")
    args = parser.parse_args()
    jax.config.update("jax_num_cpu_devices", args.cpu_devices)  # before JAX starts its CPU backend
    torch.set_num_threads(max(1, min(torch.get_num_threads(), 2)))

    mesh = sharding.make_mesh(sharding.MeshConfig(data=args.cpu_devices))
    with tempfile.TemporaryDirectory() as directory:
        hf_model = make_model(args, directory)
        policy = from_pretrained(directory)
        policy_on_mesh = from_pretrained(directory, mesh=mesh)
    rng = np.random.RandomState(0)
    ids = rng.randint(3, args.vocab, (args.batch, args.prompt)).astype(np.int32)
    mask = np.ones_like(ids)
    ids_t, mask_t = torch.as_tensor(ids, dtype=torch.long), torch.as_tensor(mask)

    def hf_generate():
        with torch.no_grad():
            return hf_model.generate(ids_t, attention_mask=mask_t, max_new_tokens=args.new,
                                     do_sample=False, use_cache=True, pad_token_id=0)

    def jax_sampler(**overrides):
        config = SamplingConfig(max_new_tokens=args.new, temperature=0.0, **overrides)
        ids_j, mask_j, key = jnp.asarray(ids), jnp.asarray(mask), jax.random.key(0)
        return lambda: jax.block_until_ready(sample(policy, ids_j, mask_j, key=key,
                                                    config=config))

    def jax_sampler_on_mesh():
        config = SamplingConfig(max_new_tokens=args.new, temperature=0.0)
        ids_j, mask_j = sharding.place((ids, mask), mesh)

        def run():
            with jax.set_mesh(mesh):
                return jax.block_until_ready(sample(policy_on_mesh, ids_j, mask_j,
                                                    key=jax.random.key(0), config=config))
        return run

    systems = {
        "transformers generate (torch)": hf_generate,
        "prime_jax sample (f32 cache, 4 decode segments: default)": jax_sampler(),
        "prime_jax sample (f32 cache, 1 decode segment)": jax_sampler(decode_segments=1),
        "prime_jax sample (bf16 cache, 4 decode segments)": jax_sampler(cache_dtype="bfloat16"),
        f"prime_jax sample (f32 cache, 4 decode segments, batch over {args.cpu_devices} CPU devices)":
            jax_sampler_on_mesh(),
    }
    results = run_all(systems, args.repeats)
    hf_first, hf_time, hf_out = results["transformers generate (torch)"]
    hf_tokens = hf_out[:, args.prompt:].numpy()
    assert hf_tokens.shape == (args.batch, args.new), hf_tokens.shape
    new_tokens = args.batch * args.new
    rows = [("transformers generate (torch)", hf_time, hf_first - hf_time, None)]
    for label, (first, best, out) in list(results.items())[1:]:
        agree = float(np.mean(np.asarray(out.tokens) == hf_tokens))
        rows.append((label, best, first - best, agree))

    lines = [
        "| system | seconds | new tokens/s | vs transformers | compile / warm-up (s) | "
        "greedy tokens equal to HF |",
        "|---|---|---|---|---|---|",
    ]
    for label, seconds, compile_s, agree in rows:
        lines.append(f"| {label} | {seconds:.3f} | {new_tokens / seconds:,.0f} | "
                     f"{hf_time / seconds:.2f}x | {compile_s:.2f} | "
                     f"{'-' if agree is None else f'{agree:.1%}'} |")
    table = "\n".join(lines)
    print(table)
    if args.no_append:
        return
    command = "python benchmarks/sampling.py" + (
        "" if args.repeats == 5 else f" --repeats {args.repeats}") + (
        "" if args.cpu_devices == 2 else f" --cpu-devices {args.cpu_devices}")
    header = (
        f"\n## sampling: rollout.sample vs transformers generate "
        f"({args.layers} layers x {args.width}, vocab {args.vocab}, batch {args.batch}, "
        f"{args.prompt}-token prompts, {args.new} new tokens, greedy, no EOS)\n"
        f"- command: `{command}`\n"
        f"- machine: {cpu_line()}, {torch.get_num_threads()} torch threads, "
        f"{jax.device_count()} jax {jax.default_backend()} device(s), load average "
        f"{load_average()} at the end (the cores are shared with other jobs); "
        f"jax {jax.__version__}, torch {torch.__version__}, "
        f"transformers {transformers.__version__}\n"
        f"{date_line()}\n"
        f"- seconds = best of {args.repeats} runs after a warm-up run; compile / warm-up = first "
        f"call minus best (jit compile for prime_jax)\n\n")
    with RESULTS_LOG.open("a") as f:
        f.write(header + table + "\n")


if __name__ == "__main__":
    main()
