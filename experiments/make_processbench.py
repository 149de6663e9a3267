"""Generate the ProcessBench-format sets shipped in prime_jax/assets/processbench/.

    python experiments/make_processbench.py --task arithmetic --model runs/pb/arith_sft_model \
        --out prime_jax/assets/processbench/arithmetic.jsonl
    python experiments/make_processbench.py --task countdown --model runs/countdown_sft/sft_model \
        --samples 8 --out prime_jax/assets/processbench/countdown.jsonl

runs/pb/arith_sft_model is a copy of a quickstart run's SFT model (``python -m prime_jax.train
--gin configs/quickstart.gin``, its ``sft_model/``); runs/countdown_sft/sft_model comes from
``python -m prime_jax.train --gin configs/quickstart_countdown.gin --steps 0 --workdir
runs/countdown_sft`` (SFT only). The shipped sets: arithmetic 300 rows (150 correct; first errors
at steps 0/1/2: 51/44/55), countdown 300 rows (150 correct; first errors at steps 0/1: 124/26 -
the first move usually decides whether the target stays reachable). A threshold-tuning split of
other held-out problems: the arithmetic command with ``--seed 1 --out runs/pb/arithmetic_dev.jsonl``.

The error-kind sets (no model: every solution written with one known kind of error,
``prime_jax.data.synthetic.arithmetic_errors``; held-out problems with 2-7 operations; 50 rows of each
kind - result slip, wrong operand, wrong operator, copy error, skipped step, wrong box, compensating
pair - and 200 correct rows, each row naming its ``kind``)::

    python experiments/make_processbench.py --task arithmetic --kinds --seed 101 \
        --out prime_jax/assets/processbench/arithmetic_dev_kinds.jsonl       # recipe / threshold selection
    python experiments/make_processbench.py --task arithmetic --kinds --seed 202 \
        --exclude prime_jax/assets/processbench/arithmetic_dev_kinds.jsonl \
        --out prime_jax/assets/processbench/arithmetic_heldout_kinds.jsonl   # scored once per frozen verifier
    python experiments/make_processbench.py --task arithmetic --kinds --seed 303 \
        --exclude prime_jax/assets/processbench/arithmetic_dev_kinds.jsonl \
        --exclude prime_jax/assets/processbench/arithmetic_heldout_kinds.jsonl \
        --out prime_jax/assets/processbench/arithmetic_heldout2_kinds.jsonl  # fresh set for the 9-stage recipe
    python experiments/make_processbench.py --task arithmetic --kinds --seed 404 \
        --exclude prime_jax/assets/processbench/arithmetic_dev_kinds.jsonl \
        --exclude prime_jax/assets/processbench/arithmetic_heldout_kinds.jsonl \
        --exclude prime_jax/assets/processbench/arithmetic_heldout2_kinds.jsonl \
        --out prime_jax/assets/processbench/arithmetic_heldout3_kinds.jsonl  # fresh set for the slip stages

The errors are the SFT model's own: for held-out problems (the task's "eval" split, disjoint from
everything trained on) the model samples ``--samples`` responses each at ``--temperature``. A
response's steps are its non-empty lines, labelled exactly by the task's solver
(``label_arithmetic_steps`` / ``label_countdown_steps``: a step is right iff it and every step
before it are, so an error propagates); ``label`` = the first wrong step. A response with no wrong
step is a correct row only if it is complete (its final answer correct); a truncated one without
a wrong step is dropped. Every problem gives at most one correct and one erroneous row (its first
such sample), and the set takes the first ``--per-class`` problems of each kind: balanced, with
``generator`` = the model path and ``final_answer_correct`` = the task checker's verdict on the
final answer (the boxed number for arithmetic, the whole solution for countdown).
"""

from __future__ import annotations

import argparse
import collections
import json
import pathlib
import re

import jax
import numpy as np

from prime_jax.data import countdown_reward, encode_prompts, left_pad, load_tokenizer, make_synthetic_rl_prompts
from prime_jax.data.synthetic.arithmetic_errors import error_rows
from prime_jax.data.synthetic import (label_arithmetic_steps, label_countdown_steps, parse_arithmetic_problem,
                                      parse_countdown_problem)
from prime_jax.experience.generate import decode_responses
from prime_jax.models import from_pretrained
from prime_jax.rollout import SamplingConfig, sample

BOXED = re.compile(r"\\boxed\{(-?\d+)\}\s*$")


def steps_and_label(task: str, text: str, problem_text: str, truncated: bool):
    """``(steps, label, final_answer_correct)`` of one response, or None to drop it."""
    steps = [line.strip() for line in text.split("\n") if line.strip()]
    if not steps:
        return None
    if task == "arithmetic":
        problem = parse_arithmetic_problem(problem_text)
        labels = label_arithmetic_steps(text, problem)
        boxed = BOXED.search(steps[-1])
        final_correct = boxed is not None and int(boxed.group(1)) == problem.answer
    else:
        labels = label_countdown_steps(text, parse_countdown_problem(problem_text))
        final_correct = countdown_reward(text, problem_text) == 1.0
    label = next((i for i, ok in enumerate(labels) if not ok), -1)
    if label == -1 and (truncated or not final_correct):
        return None
    return steps, label, final_correct


def generate(args) -> list[dict]:
    policy, tokenizer = from_pretrained(args.model), load_tokenizer(args.model)
    records = make_synthetic_rl_prompts(args.task, args.seed, args.num_problems, split="eval")
    prompts = encode_prompts(tokenizer, [r.messages for r in records])
    width = max(len(p) for p in prompts)
    config = SamplingConfig(max_new_tokens=args.max_new_tokens, temperature=args.temperature,
                            eos_id=tokenizer.eos_token_id, pad_id=tokenizer.pad_token_id)
    found = collections.defaultdict(dict)  # problem index -> {"correct" | "erroneous": row}
    key = jax.random.key(args.seed)
    for start in range(0, len(records), args.batch_prompts):
        rows = np.minimum(np.arange(start, start + args.batch_prompts), len(records) - 1)
        ids_bp, mask_bp = left_pad([prompts[i] for i in rows], width, tokenizer.pad_token_id)
        out = sample(policy, ids_bp, mask_bp, key=jax.random.fold_in(key, start), config=config,
                     num_samples=args.samples)
        tokens_bl, mask_bl, truncated_b = (np.asarray(x) for x in (out.tokens, out.mask, out.truncated))
        texts = decode_responses(tokenizer, tokens_bl, mask_bl)
        for j, text in enumerate(texts):
            index = int(rows[j // args.samples])
            problem_text = records[index].messages[0][1]
            labelled = steps_and_label(args.task, text, problem_text, bool(truncated_b[j]))
            if labelled is None:
                continue
            steps, label, final_correct = labelled
            kind = "correct" if label == -1 else "erroneous"
            found[index].setdefault(kind, {"problem": problem_text, "steps": steps, "label": label,
                                           "final_answer_correct": final_correct})
        counts = {kind: sum(kind in f for f in found.values()) for kind in ("correct", "erroneous")}
        print(f"{min(start + args.batch_prompts, len(records))}/{len(records)} problems: {counts}", flush=True)
        if min(counts.values()) >= args.per_class:
            break
    out_rows = []
    for kind in ("erroneous", "correct"):
        chosen = [found[i][kind] for i in sorted(found) if kind in found[i]][:args.per_class]
        if len(chosen) < args.per_class:
            raise SystemExit(f"only {len(chosen)} {kind} rows from {len(records)} problems: raise --num-problems "
                             "or --samples")
        out_rows += chosen
    out_rows.sort(key=lambda row: row["problem"])  # interleave the kinds deterministically
    return [{"id": f"{args.task}-{n}", "generator": str(args.model), **row} for n, row in enumerate(out_rows)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--task", choices=("arithmetic", "countdown"), required=True)
    parser.add_argument("--model", default="runs/quickstart/sft_model", help="SFT model directory (HF format)")
    parser.add_argument("--out", required=True, help="output jsonl")
    parser.add_argument("--per-class", type=int, default=150, help="correct rows = erroneous rows = this")
    parser.add_argument("--num-problems", type=int, default=1500, help="held-out problems to sample at most")
    parser.add_argument("--samples", type=int, default=4, help="samples per problem")
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--max-new-tokens", type=int, default=40)
    parser.add_argument("--batch-prompts", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--kinds", action="store_true", help="arithmetic: written solutions of every error kind "
                                                             "(no model); --per-kind rows each, --num-correct correct")
    parser.add_argument("--per-kind", type=int, default=50)
    parser.add_argument("--num-correct", type=int, default=200)
    parser.add_argument("--exclude", action="append", default=[], metavar="FILE.jsonl",
                        help="--kinds: skip the problems of this set (e.g. the dev set; repeatable)")
    args = parser.parse_args()
    if args.kinds and args.task != "arithmetic":
        raise SystemExit("--kinds is for --task arithmetic")
    if args.kinds:
        rows = [{**row, "generator": "prime_jax.data.synthetic.arithmetic_errors"}
                for row in error_rows(args.seed, split="eval", per_kind=args.per_kind, num_correct=args.num_correct,
                                     exclude=frozenset(r["problem"] for path in args.exclude
                                                       for r in map(json.loads, pathlib.Path(path).open())))]
    else:
        rows = generate(args)
    path = pathlib.Path(args.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    labels = collections.Counter(row["label"] for row in rows)
    print(f"wrote {len(rows)} rows to {path}; labels {dict(sorted(labels.items()))}")


if __name__ == "__main__":
    main()
