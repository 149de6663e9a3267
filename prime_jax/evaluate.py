"""CLI: evaluate a policy on a synthetic task or a benchmark jsonl, optionally with best-of-N.

    python -m prime_jax.evaluate (--workdir W [--step N] | --hf DIR) --task TASK [options]

Metrics (see ``prime_jax.eval.metrics``): greedy pass@1 (temperature 0, one sample), and over k
samples at ``--temperature`` / ``--top-p``: avg@k, maj@k and unbiased pass@j for j = 1, 2, 4, ..
k. With ``--prm-workdir`` (a PRIME run, or an offline implicit PRM from ``prime_jax.train_reward``)
the k samples are also ranked by the implicit PRM (``prime_jax.eval.best_of_n``), with the beta
and step delimiter it was trained with (read from its run directory): best-of-N accuracy
curves for the min / sum / last / prod-sigmoid step aggregations, the implicit outcome score
(beta * sum of log-ratios), majority vote and PRM-weighted majority vote; with ``--orm`` (an
outcome reward model from ``train_reward``, or any one-label ``*ForSequenceClassification``
directory) also by its last-token score; with ``--explicit-prm`` (an explicit PRM from
``train_reward``) by its step scores: product (Let's Verify), min (Math-Shepherd), last, and
PRM-weighted majority. Curves go to ``best_of_n.json`` + ``best_of_n.png``, with
each selector's correlation with correctness and with response length (a length-biased scorer
shows itself there).
Always writes ``results.json`` and ``results.md`` into ``--out``. A ``--workdir`` run evaluated
on the synthetic task it trained on gets that run's own settings (its ``run.json``: e.g. the
long-chain arithmetic's 6-7 operations); ``--hf`` gets the task's defaults.

Benchmark jsonl rows (one JSON object a line; malformed rows are skipped and counted):
MATH-500 / AIME / AMC ``{"problem": str, "answer": str | number}``; GSM8K ``{"question": str,
"answer": "... #### N"}`` (the text after ``####`` is the answer).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import pathlib
import sys

from prime_jax.data import MATH_SUFFIX, OUTCOME_SCORERS, load_tokenizer
from prime_jax.eval.benchmark import make_records
from prime_jax.eval.best_of_n import best_of_n_curves
from prime_jax.eval.report import plot_best_of_n, sample_metrics, write_markdown
from prime_jax.eval.samples import EvalSampling, collect_samples
from prime_jax.models import from_pretrained
from prime_jax.data.task_config import task_config_from_dict
from prime_jax.run_dir import RunInfo, load_role
from prime_jax.step_verifiers import load_step_verifier
from prime_jax.verifiers import VerifierPool


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m prime_jax.evaluate", formatter_class=argparse.RawDescriptionHelpFormatter,
        description=__doc__.split("\n\n", 1)[1])
    model = parser.add_argument_group("policy (one of --workdir / --hf)")
    model.add_argument("--workdir", help="a prime_jax run directory: evaluates its policy")
    model.add_argument("--step", type=int, help="checkpoint step of --workdir (default: latest)")
    model.add_argument("--hf", help="a local Hugging Face model directory (config.json + safetensors)")
    model.add_argument("--tokenizer", help="tokenizer directory or 'char' (default: --hf itself)")
    parser.add_argument("--task", required=True,
                        help="arithmetic | countdown (synthetic eval split) | jsonl:PATH (benchmark) | "
                             "seqio:NAME[:SPLIT] (a registered seqio Task or Mixture; split default validation)")
    parser.add_argument("--seqio-module", action="append", default=[],
                        help="a module to import first, which registers the --task seqio:NAME (repeatable)")
    parser.add_argument("--num", type=int, default=100, help="number of problems (default 100)")
    parser.add_argument("--k", type=int, default=4, help="samples per problem for avg/maj/pass@k")
    parser.add_argument("--temperature", type=float, default=0.3, help="sampling temperature (0.3)")
    parser.add_argument("--top-p", type=float, default=0.95, help="nucleus sampling top-p (0.95)")
    parser.add_argument("--max-new-tokens", type=int, default=256, help="response length limit")
    parser.add_argument("--max-prompt-length", type=int, default=1024, help="longer prompts are dropped")
    parser.add_argument("--batch-prompts", type=int, default=8, help="prompts per sampling batch")
    parser.add_argument("--decode-slots", type=int, default=0,
                        help="continuous batching through this many decode slots (0: static batches)")
    parser.add_argument("--kv-blocks", type=int, default=0,
                        help="with --decode-slots: a paged KV cache of this many 16-slot blocks (0: dense)")
    parser.add_argument("--seed", type=int, default=0, help="synthetic split and sampling seed")
    parser.add_argument("--no-suffix", action="store_true",
                        help="do not append the Eurus 'Present the answer ... \\boxed{}' suffix to jsonl problems")
    parser.add_argument("--out", default="eval_out", help="output directory (results.json, results.md)")
    prm = parser.add_argument_group("best-of-N with an implicit PRM and/or an outcome reward model")
    prm.add_argument("--prm-workdir", help="a PRIME run directory, or an offline implicit PRM directory "
                                           "(prime_jax.train_reward), whose PRM ranks the k samples")
    prm.add_argument("--prm-step", type=int, help="checkpoint step of --prm-workdir (default: latest)")
    prm.add_argument("--reference", help="reference model directory (default: the PRM run's base model)")
    prm.add_argument("--orm", help="an ORM directory (prime_jax.train_reward kind=orm, or a one-label "
                                   "*ForSequenceClassification HF directory) that ranks the k samples")
    prm.add_argument("--explicit-prm", help="an explicit PRM directory (prime_jax.train_reward kind=explicit_prm) "
                                            "whose per-step scores rank the k samples")
    prm.add_argument("--resamples", type=int, default=64, help="random N-subsets per N")
    parser.add_argument("--verifier-workers", type=int, default=1, help="verifier processes")
    return parser


def load_policy(args):
    if bool(args.workdir) == bool(args.hf):
        raise ValueError("give exactly one of --workdir and --hf")
    if args.workdir:
        return (*load_role(args.workdir, "policy", step=args.step), f"{args.workdir}@{args.step or 'latest'}")
    return from_pretrained(args.hf), load_tokenizer(args.tokenizer or args.hf), args.hf


def load_verifiers(args) -> list:
    """The step verifiers of --prm-workdir / --orm / --explicit-prm (each checked to be that kind)."""
    if (args.prm_step is not None or args.reference) and not args.prm_workdir:
        raise ValueError("--prm-step and --reference go with --prm-workdir")
    given = [("--prm-workdir", args.prm_workdir, "implicit_prm"), ("--orm", args.orm, "orm"),
             ("--explicit-prm", args.explicit_prm, "explicit_prm")]
    return [load_step_verifier(path, kind=kind, field=flag,
                               **({"step": args.prm_step, "reference": args.reference} if kind == "implicit_prm" else {}))
            for flag, path, kind in given if path]


def run_synthetic_settings(workdir: str, task: str):
    """The synthetic-task settings a run trained ``task`` with (its ``run.json``), or None: the
    task's defaults (another task, default settings, or a run written before run.json held them)."""
    fields = RunInfo.read(workdir).task
    if not fields or fields["name"] != task or fields.get("synthetic") is None:
        return None
    synthetic = task_config_from_dict(fields).synthetic
    print(f"task {task}: the settings {workdir} trained with: {synthetic}", file=sys.stderr)
    return synthetic


def evaluate(args) -> dict:
    policy, tokenizer, name = load_policy(args)
    synthetic = run_synthetic_settings(args.workdir, args.task) if args.workdir else None
    records, skipped = make_records(args.task, args.num, seed=args.seed, suffix="" if args.no_suffix else MATH_SUFFIX,
                                    synthetic=synthetic, seqio_modules=args.seqio_module)
    verifiers = load_verifiers(args)
    sampling = EvalSampling(k=args.k, temperature=args.temperature, top_p=args.top_p,
                            max_new_tokens=args.max_new_tokens, max_prompt_length=args.max_prompt_length,
                            batch_prompts=args.batch_prompts, seed=args.seed, decode_slots=args.decode_slots,
                            kv_blocks=args.kv_blocks)
    abilities = {r.ability for r in records}
    with VerifierPool(args.verifier_workers, scorers=OUTCOME_SCORERS, abilities=abilities) as pool:
        out, dropped = collect_samples(policy, tokenizer, records, pool, sampling, verifiers=verifiers)
    out_dir = pathlib.Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    results = {"model": name, "task": args.task, "num_problems": len(out["correct"]), "k": args.k,
               "synthetic": dataclasses.asdict(synthetic) if synthetic else None,
               "temperature": args.temperature, "top_p": args.top_p, "max_new_tokens": args.max_new_tokens,
               "metrics": sample_metrics(out, args.k),
               "data": {"skipped_malformed": sum(skipped.values()), "skipped_reasons": skipped,
                        "dropped_too_long": dropped},
               "best_of_n": None}
    if verifiers:
        beta = next((v.reward.beta for v in verifiers if v.kind == "implicit_prm"), None)
        results["best_of_n"] = best_of_n_curves(out, args.k, beta=beta, resamples=args.resamples, seed=args.seed)
        (out_dir / "best_of_n.json").write_text(json.dumps(results["best_of_n"], indent=2))
        plot_best_of_n(results["best_of_n"], out_dir / "best_of_n.png")
    (out_dir / "results.json").write_text(json.dumps(results, indent=2))
    write_markdown(results, out_dir / "results.md")
    return results


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        results = evaluate(args)
    except (FileNotFoundError, ValueError, RuntimeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(json.dumps(results["metrics"], indent=2))
    print(f"wrote {pathlib.Path(args.out) / 'results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
