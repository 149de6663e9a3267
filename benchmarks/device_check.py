"""One device check for whatever accelerator is present (issue 29): decode bandwidth, update MFU and
the fused advantage kernel, in one run.

    python benchmarks/device_check.py [--out benchmarks/device_check.json] [--full] [--preset NAME]

On a GPU or TPU it runs the real shapes (Qwen2.5-0.5B: 24 layers, width 896, 14 / 2 heads x 64,
MLP 4864, 151,936-token head; bfloat16 weights and cache, random weights); on a CPU a small
version (2 layers, fewer rows, shorter sequences; ``--full`` forces the real shapes) that says so
in its output (``--preset tiny``: the same checks on the test model, for the test suite). It measures:

a. decode tokens/s for batch 64 and 256 over a 1k-token context, dense ``KVCache`` and paged
   ``PagedKVCache`` (16-slot blocks), each a jitted ``lax.fori_loop`` of ``DECODE_STEPS`` steps;
   memory-bandwidth utilisation ``MBU = bytes a step must read / step time / peak HBM bandwidth``
   with bytes = weights + the rows' cached keys and values (``PEAK_HBM`` by device kind);
b. policy-update MFU: ``rl.policy_update.make_policy_update`` (the trainer's PPO step, Adam) on
   8 rows x 2k tokens with each attention backend the platform runs;
   ``MFU = model FLOPs / step time / peak bf16 FLOP/s`` with model FLOPs
   ``6 * params * tokens + 6 * layers * rows * T^2 * heads * head_dim`` (causal attention: half
   of the ``12 ...`` of a full one, forward + backward);
c. the fused advantage kernel ``advantages.prime_advantages`` at 1024 x 3072, in ms.

Ends with ``device_check: device=<kind> decode_mbu=<x> update_mfu=<y> kernel_ms=<z>`` (the best
decode MBU and update MFU over the variants; ``n/a`` where the peak of the device is unknown, as
on a CPU) and writes every number as JSON. Budget: under 8 minutes on one H100 (compiles
included). Targets when a device runs it: decode >= 60% of HBM bandwidth, update >= 40% MFU.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from prime_jax import advantages
from prime_jax.models import PRESETS, Transformer
from prime_jax.models.cache import PagedKVCache
from prime_jax.rl.policy_update import PolicyLossConfig, PolicyMiniBatch, make_policy_update
from prime_jax.training.forward import SequenceBatch

from machine import cpu_line, date_line, load_average

# Peak HBM bandwidth (bytes/s) and dense bf16 FLOP/s per device, from the vendors' data sheets.
PEAK_HBM = {"H100": 3.35e12, "H100 PCIe": 2.0e12, "H200": 4.8e12, "A100": 2.0e12, "L4": 3.0e11,
            "TPU v4": 1.2e12, "TPU v5 lite": 8.19e11, "TPU v5e": 8.19e11, "TPU v5p": 2.765e12, "TPU v6 lite": 1.64e12}
PEAK_FLOPS = {"H100": 9.89e14, "H100 PCIe": 7.56e14, "H200": 9.89e14, "A100": 3.12e14, "L4": 1.21e14,
              "TPU v4": 2.75e14, "TPU v5 lite": 1.97e14, "TPU v5e": 1.97e14, "TPU v5p": 4.59e14, "TPU v6 lite": 9.18e14}
DECODE_STEPS, CONTEXT, BLOCK = 32, 1024, 16
BACKENDS = {"cpu": ("xla", "dot_product_attention"), "gpu": ("xla", "dot_product_attention", "cudnn", "pallas_gpu"),
            "tpu": ("xla", "dot_product_attention", "splash")}


def peak(table: dict, kind: str) -> float | None:
    """The longest name in ``table`` that ``kind`` contains (``"NVIDIA H100 80GB HBM3"`` -> H100)."""
    names = [name for name in table if name.lower() in kind.lower()]
    return table[max(names, key=len)] if names else None


def timed(fn, *args, repeats: int = 3) -> float:
    """Best-of-``repeats`` seconds of ``fn(*args)`` after one compile-and-warm-up call."""
    jax.block_until_ready(fn(*args))
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        best = min(best, time.perf_counter() - start)
    return best


def failure(label: str, error: Exception, **fields) -> dict:
    """Report a variant this device cannot run (printed, and as its JSON record) instead of ending
    the check: one failing kernel must not cost the other numbers of a short device session."""
    print(f"{label}: failed ({type(error).__name__}: {str(error)[:200]})", flush=True)
    return {**fields, "error": str(error)[:500]}


def make_policy(small: bool, attention: str = "auto", preset: str = "qwen2.5-0.5b") -> Transformer:
    config = PRESETS[preset].replace(dtype="bfloat16", param_dtype="bfloat16", attention=attention)
    if small:
        config = config.replace(num_layers=2)
    return nnx.jit(lambda: Transformer(config, rngs=nnx.Rngs(0)))()


def param_bytes_and_count(policy: Transformer) -> tuple[int, int]:
    leaves = jax.tree.leaves(nnx.state(policy, nnx.Param))
    return sum(x.size * x.dtype.itemsize for x in leaves), sum(x.size for x in leaves)


def filled_caches(policy: Transformer, rows: int, context: int):
    """A dense cache and a paged pool holding ``context`` random real tokens per row."""
    c = policy.config
    slots = context + DECODE_STEPS
    dense = policy.init_cache(rows, slots)
    key = jax.random.key(1)
    keys = tuple(jax.random.normal(jax.random.fold_in(key, i), x.shape, x.dtype) for i, x in enumerate(dense.keys))
    dense = dense.replace(keys=keys, values=keys, mask_bs=jnp.arange(slots)[None].repeat(rows, 0) < context,
                          index=jnp.int32(context))
    per_row = -(-slots // BLOCK)
    pool = PagedKVCache.init(num_layers=c.num_layers, num_blocks=rows * per_row, block_size=BLOCK, batch_size=rows,
                             max_blocks=per_row, num_kv_heads=c.num_kv_heads, head_dim=c.head_dim,
                             dtype=c.compute_dtype)
    pool_keys = tuple(jax.random.normal(jax.random.fold_in(key, i), x.shape, x.dtype) for i, x in enumerate(pool.keys))
    paged = pool.replace(keys=pool_keys, values=pool_keys,
                         table_bm=jnp.arange(rows * per_row, dtype=jnp.int32).reshape(rows, per_row),
                         mask_bs=jnp.arange(per_row * BLOCK)[None].repeat(rows, 0) < context)
    return dense, paged


def decode_loop(graphdef, paged: bool, context: int):
    """``DECODE_STEPS`` greedy decode steps from ``context`` cached tokens per row, jitted."""
    @jax.jit
    def run(state, cache, token_b):
        policy = nnx.merge(graphdef, state)

        def body(i, carry):
            cache, token_b = carry
            slot_b = jnp.full(token_b.shape, context, jnp.int32) + i
            kwargs = dict(positions_bt=slot_b[:, None])
            if paged:
                kwargs.update(attention_mask_bt=jnp.ones_like(slot_b)[:, None], cache_index=slot_b)
            logits_b1v, cache = policy(token_b[:, None], cache=cache, **kwargs)
            return cache, jnp.argmax(logits_b1v[:, 0], axis=-1).astype(jnp.int32)

        return jax.lax.fori_loop(0, DECODE_STEPS, body, (cache, token_b))

    return run


def check_decode(policy: Transformer, rows_list, context: int, peak_hbm) -> list[dict]:
    weight_bytes, _ = param_bytes_and_count(policy)
    graphdef, state = nnx.split(policy)
    c = policy.config
    out = []
    for rows in rows_list:
        dense, paged = filled_caches(policy, rows, context)
        for layout, cache in (("dense", dense), ("paged", paged)):
            try:
                seconds = timed(decode_loop(graphdef, layout == "paged", context), state, cache,
                                jnp.zeros((rows,), jnp.int32))
            except Exception as error:  # noqa: BLE001 - see failure()
                out.append(failure(f"decode {layout} rows={rows}", error, layout=layout, rows=rows, context=context))
                continue
            step = seconds / DECODE_STEPS
            kv_bytes = 2 * c.num_layers * rows * (context + DECODE_STEPS / 2) * c.num_kv_heads * c.head_dim * 2
            mbu = (weight_bytes + kv_bytes) / step / peak_hbm if peak_hbm else None
            out.append({"layout": layout, "rows": rows, "context": context, "step_ms": 1e3 * step,
                        "tokens_per_s": rows / step, "bytes_per_step": weight_bytes + kv_bytes,
                        "bytes_per_s": (weight_bytes + kv_bytes) / step, "mbu": mbu})
            print(f"decode {layout:5s} rows={rows:4d} context={context}: {1e3 * step:8.2f} ms/step, "
                  f"{rows / step:9.0f} tokens/s, MBU {mbu if mbu is None else f'{mbu:.1%}'}", flush=True)
    return out


def check_update(small: bool, backends, rows: int, length: int, peak_flops, preset: str) -> list[dict]:
    out = []
    for backend in backends:
        policy = make_policy(small, backend, preset)
        c = policy.config
        graphdef, params = nnx.split(policy, nnx.Param)
        tx = optax.adamw(1e-6)
        update = make_policy_update(graphdef, tx, PolicyLossConfig())
        response = length // 2
        ones = jnp.ones((1, rows, length), jnp.int32)
        seq = SequenceBatch(tokens_bs=ones * 7, attention_mask_bs=ones,
                            response_mask_bl=jnp.ones((1, rows, response), jnp.int32))
        zeros = jnp.zeros((1, rows, response), jnp.float32)
        mb = PolicyMiniBatch(sequences=seq, old_logp_bl=zeros, advantages_bl=zeros + 1.0, ref_logp_bl=zeros)
        state = [params, tx.init(params)]

        def one_step():  # the update donates its weights and optimiser state: carry them
            state[:] = update(state[0], state[1], mb)[:2]
            return state

        try:
            seconds = timed(one_step)
        except Exception as error:  # noqa: BLE001 - see failure()
            out.append(failure(f"update {backend}", error, attention=backend))
            continue
        _, count = param_bytes_and_count(policy)
        flops = 6 * count * rows * length + 6 * c.num_layers * rows * length ** 2 * c.num_heads * c.head_dim
        mfu = flops / seconds / peak_flops if peak_flops else None
        out.append({"attention": backend, "rows": rows, "length": length, "step_ms": 1e3 * seconds,
                    "model_flops": flops, "mfu": mfu})
        print(f"update {backend:22s} {rows} x {length}: {1e3 * seconds:9.1f} ms, MFU "
              f"{mfu if mfu is None else f'{mfu:.1%}'}", flush=True)
    return out


def check_kernel(rows: int, length: int) -> float:
    rng = np.random.RandomState(0)
    logp = jnp.asarray(rng.randn(2, rows, length) * 0.1 - 1.0, jnp.float32)
    mask = jnp.asarray(np.arange(length)[None] < rng.randint(length // 4, length + 1, (rows, 1)), jnp.int32)
    acc = jnp.asarray(rng.randint(0, 2, rows), jnp.float32)
    seconds = timed(lambda: advantages.prime_advantages(logp[0], logp[1], mask, acc, num_samples=4), repeats=5)
    print(f"advantage kernel {rows} x {length}: {1e3 * seconds:.2f} ms", flush=True)
    return 1e3 * seconds


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(pathlib.Path(__file__).with_name("device_check.json")))
    parser.add_argument("--full", action="store_true", help="the real shapes also on a CPU (slow)")
    parser.add_argument("--preset", default="qwen2.5-0.5b", choices=sorted(PRESETS),
                        help="model shapes (default: Qwen2.5-0.5B; tiny: the test suite's quick run)")
    args = parser.parse_args(argv)
    device = jax.devices()[0]
    platform = "gpu" if device.platform in ("gpu", "cuda", "rocm") else device.platform
    small = platform == "cpu" and not args.full
    kind = device.device_kind if platform != "cpu" else f"cpu ({cpu_line()}, load {load_average()})"
    hbm, flops = (None, None) if platform == "cpu" else (peak(PEAK_HBM, kind), peak(PEAK_FLOPS, kind))
    print(f"device_check on {kind}, {args.preset}: "
          f"{'SMALL CPU VERSION (2 layers, short sequences)' if small else 'full shapes'}", flush=True)
    start = time.time()
    policy = make_policy(small, preset=args.preset)
    decode = check_decode(policy, (8, 32) if small else (64, 256), 128 if small else CONTEXT, hbm)
    update = check_update(small, BACKENDS.get(platform, ("xla",)), 2 if small else 8, 256 if small else 2048, flops,
                          args.preset)
    kernel_ms = check_kernel(1024, 3072)
    best = lambda rows, key: max((r[key] for r in rows if r.get(key) is not None), default=None)  # noqa: E731
    mbu, mfu = best(decode, "mbu"), best(update, "mfu")
    result = {"device": kind, "platform": platform, "preset": args.preset, "small_cpu_version": small,
              "date": date_line(),
              "seconds": round(time.time() - start, 1), "peak_hbm_bytes_per_s": hbm, "peak_flops": flops,
              "decode": decode, "update": update, "advantage_kernel_ms": kernel_ms,
              "decode_mbu": mbu, "update_mfu": mfu}
    pathlib.Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    fmt = lambda x: "n/a" if x is None else f"{x:.3f}"  # noqa: E731
    print(f"device_check: device={kind.replace(' ', '_')} decode_mbu={fmt(mbu)} update_mfu={fmt(mfu)} "
          f"kernel_ms={kernel_ms:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
