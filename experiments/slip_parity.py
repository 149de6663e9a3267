"""Which result slips a step verifier catches, by the parity of the slip (issue 27's diagnosis).

    python experiments/slip_parity.py runs/eprm_kinds_stage9 --threshold 0.2126 \
        [--data prime_jax/assets/processbench/arithmetic_dev_kinds.jsonl] [--rows]

For every ``result_slip`` row of an error-kind set, the verifier's probability at its first wrong
step (a line ``a op b = v_e + d`` with ``d != 0``) and whether it falls below the threshold (caught).
A verifier that learned only the parity of a line's result catches the odd ``d`` and misses the
even ones; the counts per parity say so in two lines. ``--rows`` prints each slip.
"""

from __future__ import annotations

import argparse

from prime_jax.data.synthetic import parse_arithmetic_problem
from prime_jax.data.synthetic.arithmetic_errors import written_error
from prime_jax.eval.processbench import load_processbench, score_records
from prime_jax.step_verifiers import load_step_verifier

DEV = "prime_jax/assets/processbench/arithmetic_dev_kinds.jsonl"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("verifier", help="an explicit-PRM directory (prime_jax.train_reward)")
    parser.add_argument("--threshold", type=float, required=True, help="a step is caught below this probability")
    parser.add_argument("--data", default=DEV, help="an error-kind set with result_slip rows")
    parser.add_argument("--rows", action="store_true", help="print every slip")
    args = parser.parse_args()
    slips = [r for r in load_processbench(args.data)[0] if r.kind == "result_slip"]
    probs = score_records(load_step_verifier(args.verifier, kind="explicit_prm"), slips, batch_size=64)
    counts = {"even": [0, 0], "odd": [0, 0]}
    for record, probs_k in zip(slips, probs):
        d = written_error(parse_arithmetic_problem(record.problem), record.steps[record.label], record.label)
        p = float(probs_k[record.label])
        caught = p < args.threshold
        counts["odd" if d % 2 else "even"][0] += caught
        counts["odd" if d % 2 else "even"][1] += 1
        if args.rows:
            print(f"{p:.3f} {'caught' if caught else 'missed'} d={d:+d} {record.steps[record.label]}")
    for parity, (caught, n) in counts.items():
        print(f"{parity} slips: {caught} of {n} caught")


if __name__ == "__main__":
    main()
