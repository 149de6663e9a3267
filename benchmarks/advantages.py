"""Fused advantage kernel vs a NumPy transcription of the PRIME reference's loop structure.

    python benchmarks/advantages.py            # paper batch: 1024 responses x 3072 tokens, n=4
    python benchmarks/advantages.py --small    # 256 x 512, for a quick look

The baseline follows the reference step by step: token log-ratio and batch norm vectorised;
RLOO per source with a Python loop over prompt groups and, inside, over rows for the per-row
masked means; the discounted return as a Python loop over time (vectorised over rows); masked
whitening vectorised. Both sides get the same inputs; outputs are checked to agree. Prints a
table and appends it to experiments/LOG.md. Speed is a ratio measured in the same run.
"""

from __future__ import annotations

import argparse
import datetime
import sys
import time

import jax
import numpy as np

from prime_jax import advantages as adv_lib
from prime_jax.scans import DEFAULT_SCAN_METHOD, SCAN_METHODS

from machine import RESULTS_LOG, cpu_line



def numpy_reference(logp_prm, logp_ref, mask, acc, *, n, gamma_p, gamma_o):
    """NumPy transcription of the reference (loops where the reference loops)."""
    b, l = mask.shape
    q = (logp_prm - logp_ref) * mask
    scores = q.astype(np.float32)
    rev = np.flip(np.cumsum(np.flip(scores, -1), -1), -1)
    rm = scores / (np.abs(rev).max() + 1e-6)

    def masked_rloo(x, m):
        x = np.where(m, x, 0).astype(np.float32)
        for start in range(0, b, n):
            means = np.array([x[i][m[i]].mean() for i in range(start, start + n)])
            blk, mb = x[start:start + n], m[start:start + n]
            blk[mb] = blk[mb] * (n / (n - 1)) - means.sum() / (n - 1)
        return x

    def discount(x, gamma):
        out = np.zeros_like(x)
        run = np.zeros(b, x.dtype)
        for t in reversed(range(l)):
            run = x[:, t] + gamma * run
            out[:, t] = run
        return out

    valid = mask.astype(bool)
    len_b = mask.sum(-1)
    last = np.zeros_like(valid)
    last[np.arange(b), len_b - 1] = True
    out_x = np.zeros((b, l), np.float32)
    out_x[np.arange(b), len_b - 1] = acc
    returns = (discount(masked_rloo(rm, valid), gamma_p)
               + discount(masked_rloo(out_x, last), gamma_o))
    nv = valid.sum()
    mu = (returns * valid).sum() / nv
    var = (((returns - mu) ** 2) * valid).sum() / nv * (np.float32(nv) / np.float32(nv - 1))
    return (returns - mu) / np.sqrt(var + 1e-8), returns, rm


def timed(fn, repeats):
    fn()  # warm-up / compile
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.min(times))  # min: the 2 shared cores make the median noisy


def machine():
    return f"{cpu_line()}, jax {jax.__version__} on {jax.default_backend()}"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--small", action="store_true", help="256 x 512 instead of 1024 x 3072")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--no-append", action="store_true", help="do not write experiments/LOG.md")
    args = ap.parse_args(argv)
    b, l, n = (256, 512, 4) if args.small else (1024, 3072, 4)

    rng = np.random.default_rng(0)
    len_b = rng.integers(l // 8, l + 1, size=b)
    mask = (np.arange(l)[None] < len_b[:, None]).astype(np.int32)
    logp_prm = -rng.random((b, l), dtype=np.float32) * 4
    logp_ref = logp_prm + rng.normal(0, 0.05, size=(b, l)).astype(np.float32)
    acc = (rng.random(b) < 0.5).astype(np.float32)
    dev = [jax.device_put(x) for x in (logp_prm, logp_ref, mask, acc)]
    moved = sum(x.nbytes for x in (logp_prm, logp_ref, mask, acc)) + 3 * b * l * 4  # + 3 outputs

    rows = []
    for gamma in (1.0, 0.99):
        kw = dict(n=n, gamma_p=gamma, gamma_o=gamma)
        t_np = timed(lambda: numpy_reference(logp_prm, logp_ref, mask, acc, **kw), args.repeats)
        want = numpy_reference(logp_prm, logp_ref, mask, acc, **kw)
        for method in SCAN_METHODS:
            def run(method=method):
                config = adv_lib.AdvantageConfig(process_gamma=gamma, outcome_gamma=gamma, scan_method=method)
                return jax.block_until_ready(adv_lib.prime_advantages(*dev, num_samples=n, advantage=config))
            t_jax = timed(run, args.repeats)
            got = run()
            err = max(float(np.abs(np.where(mask, np.asarray(g) - w, 0)).max())
                      for g, w in zip(got, want))
            rows.append((gamma, method, t_np, t_jax, t_np / t_jax, moved / t_jax / 1e9, err))

    head = ("| gamma | scan method | NumPy ref (ms) | fused JAX (ms) | speedup | GB/s | "
            "max abs diff |")
    lines = [head, "|---|---|---|---|---|---|---|"]
    for g, m, tn, tj, sp, gbs, err in rows:
        default = " (default)" if m == DEFAULT_SCAN_METHOD else ""
        lines.append(f"| {g} | {m}{default} | {tn * 1e3:.1f} | {tj * 1e3:.2f} | {sp:.1f}x | "
                     f"{gbs:.2f} | {err:.1e} |")
    cmd = "python benchmarks/advantages.py" + (" --small" if args.small else "")
    stamp = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    block = "\n".join([
        f"\n## advantages: fused kernel vs NumPy reference ({b} x {l}, n={n})",
        f"- command: `{cmd}`", f"- machine: {machine()}", f"- date: {stamp}",
        f"- bytes the kernel must move: {moved / 1e6:.1f} MB (2 log-prob + int32 mask + acc in, "
        "advantages/returns/rewards out, f32); GB/s = that / fused time; times are the min "
        f"of {args.repeats} runs after a warm-up (compile) run, both sides", "", *lines, ""])
    print(block)
    if not args.no_append:
        if not RESULTS_LOG.exists():
            RESULTS_LOG.write_text("# Benchmark results (appended by the scripts in benchmarks/ and experiments/)\n")
        with RESULTS_LOG.open("a") as f:
            f.write(block)
    return 0


if __name__ == "__main__":
    sys.exit(main())
