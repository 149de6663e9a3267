"""Verifier throughput: rows/s for math and code through `VerifierPool`, against in-process
sequential scoring measured in the same run (the baseline for the ratio).

    python benchmarks/verifiers.py [--workers 2] [--math-rows 240] [--code-rows 48]

Prints a table and appends it to experiments/LOG.md (command, machine, date, and the code
sandbox backend: every code row runs in its own sandbox, see prime_jax/verifiers/sandbox.py).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import time

from prime_jax.verifiers import VerifierPool, sandbox, score_row

from machine import RESULTS_LOG, load_average

MATH_TEMPLATES = [  # (response, ground truth) per row index i: fast-path and symbolic
    lambda i: (f"so the answer is \\boxed{{\\frac{{{i}}}{{4}}}}", f"{i / 4}"),
    lambda i: (f"The answer is {i + 1},000.", f"{i + 1}000"),
    lambda i: (f"\\boxed{{x = {i}}}", f"{i}"),
    lambda i: (f"\\boxed{{{i}\\text{{ cm}}}}", f"{i}"),
    lambda i: (f"\\boxed{{{i + 1}\\sqrt{{8}}}}", f"{2 * i + 2}\\sqrt{{2}}"),
    lambda i: (f"\\boxed{{(x+{i})^2}}", f"x^2+{2 * i}x+{i * i}"),
    lambda i: (f"\\boxed{{\\begin{{pmatrix}}{i}\\\\2\\end{{pmatrix}}}}",
               f"\\begin{{pmatrix}}{i}\\\\2\\end{{pmatrix}}"),
    lambda i: (f"\\boxed{{({i}, {i + 1}]}}", f"[{i},{i + 1}]"),
    lambda i: (f"\\boxed{{{i + 2}\\pi}}", f"{i + 1}\\pi"),
    lambda i: (f"\\boxed{{{i}}}", f"{i + 1}"),
]
STDIO_TESTS = json.dumps({"inputs": [f"{i} {i + 1}\n" for i in range(5)],
                          "outputs": [f"{2 * i + 1}\n" for i in range(5)]})
CALL_TESTS = json.dumps({"inputs": [[[3, 1, 2]], [[5, 4]], [[]]],
                         "outputs": [[1, 2, 3], [4, 5], []], "fn_name": "sortList"})
CODE_CASES = [
    ("```python\na, b = map(int, input().split())\nprint(a + b)\n```", STDIO_TESTS),
    ("```python\nprint(0)\n```", STDIO_TESTS),
    ("```python\nclass Solution:\n    def sortList(self, xs):\n        return sorted(xs)\n```",
     CALL_TESTS),
]


def make_math_rows(n):
    """Distinct rows (no cache can help): template i % 10 instantiated with i."""
    return [(*MATH_TEMPLATES[i % len(MATH_TEMPLATES)](i), "math") for i in range(n)]


def make_code_rows(n):
    return [(*CODE_CASES[i % len(CODE_CASES)], "code") for i in range(n)]


def time_pool(pool, rows):
    start = time.perf_counter()
    pool.score(rows)
    return len(rows) / (time.perf_counter() - start)


def time_sequential(rows):
    start = time.perf_counter()
    for row in rows:
        score_row(row, math_timeout=5.0, code_timeout=4.0)
    return len(rows) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--math-rows", type=int, default=240)
    parser.add_argument("--code-rows", type=int, default=48)
    args = parser.parse_args()
    math_rows = make_math_rows(args.math_rows + 20)
    code_rows = make_code_rows(args.code_rows + 3)
    warm_rows, math_rows = math_rows[:20], math_rows[20:]
    code_warm, code_rows = code_rows[:3], code_rows[3:]
    time_sequential(warm_rows[:10] + code_warm)  # start this process's symbolic worker
    results = []
    with VerifierPool(num_workers=args.workers) as pool:
        pool.score(warm_rows + code_warm)  # start the workers and their symbolic workers
        mixed = [row for pair in zip(math_rows[::5], code_rows[::2]) for row in pair]
        for name, rows in (("math", math_rows), ("code", code_rows), ("mixed", mixed)):
            sequential = time_sequential(rows)  # the same rows, one by one in this process
            pooled = time_pool(pool, rows)
            results.append((name, len(rows), sequential, pooled))
        stats = pool.stats.counts()
    header = "| ability | rows | in-process rows/s | pool rows/s | speed-up |"
    lines = [header, "|---|---|---|---|---|"]
    for name, n, sequential, pooled in results:
        lines.append(f"| {name} | {n} | {sequential:.1f} | {pooled:.1f} | "
                     f"{pooled / sequential:.2f}x |")
    table = "\n".join(lines)
    print(table)
    print("pool stats:", json.dumps(stats))
    machine = f"{platform.node()} {platform.machine()} {os.cpu_count()} cpus, " \
              f"Python {platform.python_version()}, {args.workers} workers, " \
              f"load average {load_average()} (machine shared with other jobs), " \
              f"code sandbox {sandbox.resolve().name}"
    entry = (f"\n## verifiers ({datetime.datetime.now().isoformat(timespec='seconds')})\n"
             f"Command: `python {' '.join(sys.argv)}`  \nMachine: {machine}\n\n{table}\n")
    if not RESULTS_LOG.exists():
        RESULTS_LOG.write_text("# prime_jax benchmark results\n")
    with RESULTS_LOG.open("a") as handle:
        handle.write(entry)


if __name__ == "__main__":
    main()
