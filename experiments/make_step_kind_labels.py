"""Step-labelled training data for an explicit PRM that judges steps, not lines (issue 27 item 1).

    python experiments/make_step_kind_labels.py --model /work/baseline_runs/quickstart/sft_model \
        --num-problems 4000 --corrupted 2 --sampled-problems 1024 --samples 4 --out runs/step_kinds.jsonl

Per arithmetic problem of the TRAIN split (2-7 operations, disjoint by problem text from every
evaluation set, which uses the eval split): one correct solution and ``--corrupted`` solutions with
an error of a kind drawn in turn from ``arithmetic_errors.ERROR_KINDS`` (result slip, wrong operand,
wrong operator, copy error, skipped step, wrong box, compensating pair), plus ``--extra-slips`` more
result slips (the kind that needs the line's arithmetic checked, not a comparison; with
``--even-slips`` only slips by an even amount, which a check of the result's parity misses); and
``--samples`` of the SFT model's own solutions (temperature 1) of ``--sampled-problems`` further
train problems of the task's default distribution (3 operations, what the model was trained on and
errs on naturally).
Every step is labelled exactly: ``hard_k = 1`` iff steps 0..k are all right (the task's
"prefix still correct" label), ``soft = hard``. Output: the Monte-Carlo label jsonl that
``StepLabelConfig.labels = "mc_hard"`` reads (``reward_models.mc_labels``: prompt_index, prompt,
ground_truth, ability, response, steps with their newline, hard, soft, completions = 0) plus
``kind`` ("correct", an error kind, or "sampled"). Prompt indices are shuffled so the trainer's
held-out last 10% of prompts mixes all kinds.
"""

from __future__ import annotations

import argparse
import collections
import json
import pathlib

import jax
import numpy as np

from prime_jax.data import encode_prompts, left_pad, load_tokenizer
from prime_jax.data.steps import split_steps
from prime_jax.data.synthetic import (ArithmeticConfig, label_arithmetic_steps, make_arithmetic_problems,
                                      solve_arithmetic)
from prime_jax.data.synthetic.arithmetic_errors import CORRECT, ERROR_KINDS, corrupt, written_error
from prime_jax.experience.generate import decode_responses
from prime_jax.models import from_pretrained
from prime_jax.rollout import SamplingConfig, sample


def labelled_row(prompt_index: int, problem, response: str, kind: str) -> dict | None:
    """One label-file row of ``response`` with its exact hard labels (None for a blank response)."""
    steps = split_steps(response, "\n")
    if not steps:
        return None
    hard = [int(ok) for ok in label_arithmetic_steps("".join(steps), problem)]
    return {"prompt_index": prompt_index, "prompt": problem.text, "ground_truth": str(problem.answer),
            "ability": "math", "response": "".join(steps), "steps": steps, "hard": hard,
            "soft": [float(h) for h in hard], "completions": 0, "kind": kind}


def written_rows(problems, args) -> dict[int, list[dict]]:
    """``{problem: rows}`` of the correct and corrupted solutions."""
    rng = np.random.default_rng([args.seed, 1])
    out, turn = collections.defaultdict(list), 0
    for index, problem in enumerate(problems):
        kinds = [CORRECT]
        while len(kinds) < 1 + args.corrupted:
            kinds.append(ERROR_KINDS[turn % len(ERROR_KINDS)])
            turn += 1
        for kind in kinds:
            try:
                solution = corrupt(rng, problem, kind)
            except ValueError:  # a problem too short for this kind: the next kind takes the turn
                continue
            out[index].append(labelled_row(index, problem, "\n".join(solution.lines), kind))
        for _ in range(args.extra_slips):
            solution = parity_blind_slip(rng, problem) if args.even_slips else corrupt(rng, problem, "result_slip")
            out[index].append(labelled_row(index, problem, "\n".join(solution.lines), "result_slip"))
    return out


def parity_blind_slip(rng: np.random.Generator, problem, attempts: int = 64):
    """A result slip whose written value ``v_e + d`` has an even ``d``: its parity is the true
    value's, so a verifier that checks only the parity of a line's result cannot see it."""
    for _ in range(attempts):
        solution = corrupt(rng, problem, "result_slip")
        if written_error(problem, solution.lines[solution.first_error], solution.first_error) % 2 == 0:
            return solution
    raise ValueError(f"no even result slip drawn for {problem.text!r} in {attempts} tries")


def sampled_rows(chosen, args, offset: int) -> dict[int, list[dict]]:
    """``{offset + problem: rows}`` of the SFT model's own samples of the ``chosen`` problems."""
    policy, tokenizer = from_pretrained(args.model), load_tokenizer(args.model)
    prompts = encode_prompts(tokenizer, [(("user", p.text),) for p in chosen])
    width = max(len(p) for p in prompts)
    config = SamplingConfig(max_new_tokens=args.max_new_tokens, temperature=1.0,
                            eos_id=tokenizer.eos_token_id, pad_id=tokenizer.pad_token_id)
    out, key = collections.defaultdict(list), jax.random.key(args.seed)
    for start in range(0, len(chosen), args.batch_prompts):
        rows = np.minimum(np.arange(start, start + args.batch_prompts), len(chosen) - 1)
        ids_bp, mask_bp = left_pad([prompts[i] for i in rows], width, tokenizer.pad_token_id)
        result = sample(policy, ids_bp, mask_bp, key=jax.random.fold_in(key, start), config=config,
                        num_samples=args.samples)
        texts = decode_responses(tokenizer, np.asarray(result.tokens), np.asarray(result.mask))
        for j, text in enumerate(texts):
            index = int(rows[j // args.samples])
            if start + j // args.samples >= len(chosen):
                continue  # a padding row of the last batch
            row = labelled_row(offset + index, chosen[index], text, "sampled")
            if row is not None:
                out[offset + index].append(row)
        print(f"sampled {min(start + args.batch_prompts, len(chosen))}/{len(chosen)} problems", flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--model", required=True, help="SFT model directory (HF format) whose samples join the set")
    parser.add_argument("--out", required=True, help="output jsonl (Monte-Carlo label format)")
    parser.add_argument("--num-problems", type=int, default=4000)
    parser.add_argument("--corrupted", type=int, default=2, help="corrupted solutions per problem")
    parser.add_argument("--extra-slips", type=int, default=0,
                        help="further result-slip solutions per problem (a line's own arithmetic wrong)")
    parser.add_argument("--even-slips", action="store_true",
                        help="draw the extra slips with an even error, which a parity check of the result misses")
    parser.add_argument("--sampled-problems", type=int, default=1024, help="3-operation problems the SFT model solves")
    parser.add_argument("--samples", type=int, default=4, help="SFT samples per sampled problem")
    parser.add_argument("--min-ops", type=int, default=2)
    parser.add_argument("--max-ops", type=int, default=7)
    parser.add_argument("--max-new-tokens", type=int, default=80)
    parser.add_argument("--batch-prompts", type=int, default=128)
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args()
    config = ArithmeticConfig(num_ops=args.max_ops, min_ops=args.min_ops)
    problems = [p for p in make_arithmetic_problems(args.seed, 2 * args.num_problems, "train", config)
                if len(p.text) + len(solve_arithmetic(p).text) <= 96][:args.num_problems]
    by_problem = written_rows(problems, args)
    if args.sampled_problems:  # the policy's own distribution: the task's default 3-operation problems
        texts = {p.text for p in problems}
        own = [p for p in make_arithmetic_problems(args.seed + 1, 2 * args.sampled_problems, "train")
               if p.text not in texts][:args.sampled_problems]
        by_problem.update(sampled_rows(own, args, offset=len(problems)))
        problems = problems + own
    order = np.random.default_rng([args.seed, 2]).permutation(len(problems))
    lines = [json.dumps({**row, "prompt_index": new}) for new, old in enumerate(order) for row in by_problem[int(old)]]
    path = pathlib.Path(args.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    rows = [json.loads(line) for line in lines]
    kinds = collections.Counter(r["kind"] for r in rows)
    sampled_wrong = sum(0 in r["hard"] for r in rows if r["kind"] == "sampled")
    print(f"wrote {len(rows)} rows ({len(problems)} problems) to {path}: {dict(kinds)}; "
          f"sampled with a wrong step: {sampled_wrong}")


if __name__ == "__main__":
    main()
