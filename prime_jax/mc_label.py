"""CLI: Monte-Carlo step labels (Math-Shepherd) for a synthetic task's prompts.

    python -m prime_jax.mc_label --model SFT_DIR --task arithmetic|countdown --num-prompts P \\
        --samples-per-prompt S --completions N --out FILE.jsonl

The labelling itself is ``prime_jax.reward_models.mc_labels`` (its docstring has the rules, the
batching plan and the resumable output format).
"""

from __future__ import annotations

import argparse
import json
import sys

from prime_jax import rollout
from prime_jax.data import OUTCOME_SCORERS, load_tokenizer, make_synthetic_rl_prompts
from prime_jax.data.steps import delimiter_ids
from prime_jax.models import from_pretrained
from prime_jax.reward_models.mc_labels import MCLabelConfig, PolicyCompleter, label_prompts
from prime_jax.verifiers import VerifierPool


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m prime_jax.mc_label",
        description="Monte-Carlo step labels (Math-Shepherd): sample solutions from a model, complete every "
                    "step prefix N times with the same model, label each step hard (any completion "
                    "correct) and soft (fraction correct). Resumable jsonl + FILE.summary.json.")
    parser.add_argument("--model", required=True, help="Hugging Face directory of the solver / completer (SFT model)")
    parser.add_argument("--tokenizer", help="tokenizer directory or 'char' (default: --model); it must "
                                            "encode the step delimiter")
    parser.add_argument("--task", required=True, choices=("arithmetic", "countdown"))
    parser.add_argument("--split", default="train", choices=("train", "eval"))
    parser.add_argument("--task-seed", type=int, default=0, help="seed of the synthetic problems")
    parser.add_argument("--num-prompts", type=int, required=True)
    parser.add_argument("--samples-per-prompt", type=int, default=4, help="solutions sampled per prompt")
    parser.add_argument("--completions", type=int, default=8, help="N completions per step prefix")
    parser.add_argument("--out", required=True, help="output jsonl (appended to; finished prompts are skipped)")
    parser.add_argument("--batch-rows", type=int, default=64,
                        help="rows per sampler call (a multiple of --samples-per-prompt and --completions)")
    parser.add_argument("--max-new-tokens", type=int, default=40, help="tokens per solution and per completion")
    parser.add_argument("--max-prompt-length", type=int, default=16,
                        help="prompt tokens; sampler rows are this + --max-new-tokens wide")
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--step-delimiter", default="\n")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed")
    parser.add_argument("--decode-slots", type=int, default=0,
                        help="continuous batching through this many decode slots (0: static batches)")
    parser.add_argument("--kv-blocks", type=int, default=0,
                        help="with --decode-slots: a paged KV cache of this many 16-slot blocks (0: dense)")
    parser.add_argument("--verifier-workers", type=int, default=1)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        config = MCLabelConfig(samples_per_prompt=args.samples_per_prompt, completions=args.completions,
                               batch_rows=args.batch_rows, step_delimiter=args.step_delimiter)
        tokenizer = load_tokenizer(args.tokenizer or args.model)
        try:
            delimiter_ids(tokenizer, args.step_delimiter)
        except ValueError as error:
            raise ValueError(f"{args.tokenizer or args.model}: {error}: prefixes would reach the completer without "
                             "their step ends (try --tokenizer char for char-tokenizer models)") from error
        policy = from_pretrained(args.model)
        records = make_synthetic_rl_prompts(args.task, args.task_seed, args.num_prompts, args.split)
        sampling = rollout.SamplingConfig(max_new_tokens=args.max_new_tokens, temperature=args.temperature,
                                          eos_id=tokenizer.eos_token_id, pad_id=tokenizer.pad_token_id or 0,
                                          decode_slots=args.decode_slots, kv_blocks=args.kv_blocks)
        completer = PolicyCompleter(policy, tokenizer, sampling, batch_rows=args.batch_rows,
                                    width=args.max_prompt_length + args.max_new_tokens, seed=args.seed)
        abilities = {r.ability for r in records}
        with VerifierPool(args.verifier_workers, scorers=OUTCOME_SCORERS, abilities=abilities) as pool:
            summary = label_prompts(records, solver=completer, completer=completer, pool=pool, config=config,
                                    out=args.out)
    except (FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(json.dumps({k: v for k, v in summary.items() if k != "config"}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
