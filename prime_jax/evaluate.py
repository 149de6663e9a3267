"""CLI: evaluate a policy on a synthetic task or a benchmark jsonl, optionally with best-of-N.

    python -m prime_jax.evaluate (--workdir W [--step N] | --hf DIR) --task TASK [options]

Metrics (see ``prime_jax.eval_metrics``): greedy pass@1 (temperature 0, one sample), and over k
samples at ``--temperature`` / ``--top-p``: avg@k, maj@k and unbiased pass@j for j = 1, 2, 4, ..
k. With ``--prm-workdir`` (a PRIME run, or an offline implicit PRM from ``prime_jax.train_reward``)
the k samples are also ranked by the implicit PRM (``prime_jax.best_of_n``): best-of-N accuracy
curves for the min / sum / last / prod-sigmoid step aggregations, the implicit outcome score
(beta * sum of log-ratios), majority vote and PRM-weighted majority vote; with ``--orm`` (an
outcome reward model from ``train_reward``, or any one-label ``*ForSequenceClassification``
directory) also by its last-token score. Curves go to ``best_of_n.json`` + ``best_of_n.png``, with
each selector's correlation with correctness and with response length (a length-biased scorer
shows itself there).
Always writes ``results.json`` and ``results.md`` into ``--out``.

Benchmark jsonl rows (one JSON object a line; malformed rows are skipped and counted):
MATH-500 / AIME / AMC ``{"problem": str, "answer": str | number}``; GSM8K ``{"question": str,
"answer": "... #### N"}`` (the text after ``####`` is the answer).
"""

from __future__ import annotations

import argparse
import collections
import json
import pathlib
import sys

import jax
import numpy as np

from prime_jax import best_of_n, eval_metrics, rollout
from prime_jax.data import (
    MATH_SUFFIX,
    PromptPipeline,
    PromptRecord,
    countdown_reward,
    left_pad,
    load_tokenizer,
    make_synthetic_rl_prompts,
)
from prime_jax.export import load_role
from prime_jax.models import from_pretrained, load_orm
from prime_jax.rewards import step_ends_from_tokens
from prime_jax.rl_batch import decode_responses
from prime_jax.verifiers import VerifierPool
from prime_jax.verifiers.answer import extract_answer, normalize_answer

SYNTHETIC_TASKS = ("arithmetic", "countdown")
PRM_CURVES = {"prm_min": "min", "prm_sum": "sum", "prm_last": "last", "prm_prod": "prod_sigmoid"}


# ---------------------------------------------------------------------------------- benchmarks
def parse_benchmark_row(row) -> tuple[str, str]:
    """(problem, answer) of one benchmark row; raises ValueError naming what is wrong."""
    if not isinstance(row, dict):
        raise ValueError("not an object")  # noqa: TRY004 - a malformed row, counted by reason
    problem = row.get("problem", row.get("question"))
    answer = row.get("answer")
    if not isinstance(problem, str) or not problem.strip():
        raise ValueError("no problem/question text")
    if isinstance(answer, bool) or not isinstance(answer, (str, int, float)):
        raise ValueError("no answer")  # noqa: TRY004 - a malformed row, counted by reason
    answer = str(answer)
    if "question" in row and "problem" not in row:  # GSM8K: the final answer follows '####'
        if "####" not in answer:
            raise ValueError("GSM8K answer without '####'")
        answer = answer.rsplit("####", 1)[1].strip().replace(",", "")
    if not answer.strip():
        raise ValueError("empty answer")
    return problem.strip(), answer.strip()


def load_benchmark(path: str | pathlib.Path, *, suffix: str = MATH_SUFFIX
                   ) -> tuple[list[PromptRecord], dict[str, int]]:
    """Math prompts of a benchmark jsonl, plus ``{reason: count}`` of skipped malformed rows."""
    records, skipped = [], collections.Counter()
    for line in pathlib.Path(path).read_text().splitlines():
        if not line.strip():
            continue
        try:
            problem, answer = parse_benchmark_row(json.loads(line))
        except json.JSONDecodeError:
            skipped["invalid json"] += 1
            continue
        except ValueError as error:
            skipped[str(error)] += 1
            continue
        records.append(PromptRecord(messages=(("user", problem + suffix),), ground_truth=answer,
                                    ability="math", data_source=pathlib.Path(path).stem))
    return records, dict(skipped)


def make_records(task: str, num: int, *, seed: int, suffix: str):
    """(records, skipped) for ``arithmetic`` / ``countdown`` (eval split) or ``jsonl:PATH``."""
    if task in SYNTHETIC_TASKS:
        return make_synthetic_rl_prompts(task, seed, num, split="eval"), {}
    if task.startswith("jsonl:"):
        records, skipped = load_benchmark(task[len("jsonl:"):], suffix=suffix)
        return records[:num], skipped
    raise ValueError(f"--task {task!r}: expected one of {SYNTHETIC_TASKS} or jsonl:PATH")


# ---------------------------------------------------------------------------------- sampling
def _answer(text: str):
    answer = extract_answer(text)
    return None if answer is None else normalize_answer(answer)


def collect(policy, tokenizer, records, pool, args, prm_pair=None, orm=None):
    """Greedy and k-sample rollouts of every prompt, verified (and scored by the implicit PRM
    ``prm_pair`` and the ORM ``orm`` when given)."""
    from tqdm import tqdm

    pipeline = PromptPipeline(records, tokenizer, num_samples=1, shuffle=False,
                              max_prompt_length=args.max_prompt_length)
    count = len(pipeline)
    if count == 0:
        raise ValueError("no prompts to evaluate (all rows malformed or too long?)")
    sequences = [pipeline.prompt_tokens(i) for i in range(count)]
    width = -(-max(len(s) for s in sequences) // 8) * 8
    ids_np, mask_np = left_pad(sequences, width, pipeline.pad_id)
    base = {"max_new_tokens": args.max_new_tokens, "eos_id": tokenizer.eos_token_id,
            "pad_id": pipeline.pad_id}
    greedy_cfg = rollout.SamplingConfig(temperature=0.0, **base)
    sample_cfg = rollout.SamplingConfig(temperature=args.temperature, top_p=args.top_p, **base)
    delimiter = tuple(tokenizer.encode(args.step_delimiter, add_special_tokens=False))
    k, per = args.k, args.batch_prompts
    out = collections.defaultdict(list)
    key = jax.random.key(args.seed)
    for start in tqdm(range(0, count, per), desc="evaluate", unit="batch"):
        real = min(per, count - start)
        rows = np.minimum(np.arange(start, start + per), count - 1)  # pad with the last prompt
        ids_bp, mask_bp = ids_np[rows], mask_np[rows]
        truths = [pipeline.records[i].ground_truth for i in rows[:real]]
        abilities = [pipeline.records[i].ability for i in rows[:real]]
        greedy = rollout.sample(policy, ids_bp, mask_bp, key=key, config=greedy_cfg)
        texts = decode_responses(tokenizer, np.asarray(greedy.tokens)[:real], np.asarray(greedy.mask)[:real])
        out["greedy"] += pool.score(list(zip(texts, truths, abilities)))
        many = rollout.sample(policy, ids_bp, mask_bp, key=jax.random.fold_in(key, start + 1),
                              config=sample_cfg, num_samples=k)
        tokens_bl, resp_bl = np.asarray(many.tokens), np.asarray(many.mask)
        texts = decode_responses(tokenizer, tokens_bl[:real * k], resp_bl[:real * k])
        scores = pool.score([(t, truths[j // k], abilities[j // k]) for j, t in enumerate(texts)])
        out["correct"] += [scores[p * k:(p + 1) * k] for p in range(real)]
        out["answers"] += [[_answer(t) for t in texts[p * k:(p + 1) * k]] for p in range(real)]
        out["lengths"] += resp_bl[:real * k].sum(axis=1).tolist()
        out["truncated"] += np.asarray(many.truncated)[:real * k].tolist()
        if orm is not None or prm_pair is not None:  # prompt + response rows for the scorers
            tokens_bs = np.concatenate([np.repeat(ids_bp, k, 0), tokens_bl], axis=1)
            mask_bs = np.concatenate([np.repeat(mask_bp, k, 0), resp_bl], axis=1)
        if orm is not None:
            out["orm"] += np.asarray(best_of_n.orm_scores(orm, tokens_bs, mask_bs))[:real * k].tolist()
        if prm_pair is not None:
            ends_bl = np.asarray(step_ends_from_tokens(many.tokens, many.mask, delimiter))
            steps_bk, count_b = best_of_n.implicit_step_rewards(*prm_pair, tokens_bs, mask_bs, resp_bl, ends_bl)
            out["steps"] += [steps_bk[j, :count_b[j]].tolist() for j in range(real * k)]
    return out, len(records) - count


# ---------------------------------------------------------------------------------- metrics
def sample_metrics(out, k: int) -> dict[str, float]:
    correct_pk = np.asarray(out["correct"], np.float64)
    metrics = {"greedy_pass@1": float(np.mean(out["greedy"])), f"avg@{k}": eval_metrics.avg_at_k(correct_pk),
               f"maj@{k}": eval_metrics.maj_at_k(out["answers"], correct_pk)}
    j = 1
    while j <= k:
        metrics[f"pass@{j}"] = eval_metrics.mean_pass_at_k(correct_pk > 0.5, j)
        j *= 2
    if f"pass@{k}" not in metrics:
        metrics[f"pass@{k}"] = eval_metrics.mean_pass_at_k(correct_pk > 0.5, k)
    metrics["mean_response_length"] = float(np.mean(out["lengths"]))
    metrics["truncated_fraction"] = float(np.mean(out["truncated"]))
    return metrics


def best_of_n_curves(out, k: int, *, beta: float, resamples: int, seed: int) -> dict:
    """Best-of-N curves: every implicit-PRM aggregation and the implicit outcome score (when the
    samples have PRM step scores), the trained ORM (when they have ORM scores), and majority votes."""
    correct_pk = np.asarray(out["correct"], np.float64)
    p = correct_pk.shape[0]
    ns = sorted({2 ** i for i in range(int(np.log2(k)) + 1)} | {k})
    scores = {}
    if out["steps"]:
        steps = [out["steps"][i * k:(i + 1) * k] for i in range(p)]
        for name, how in PRM_CURVES.items():
            scores[name] = [[eval_metrics.aggregate_steps(s, how, beta=beta) for s in row] for row in steps]
        scores["implicit_orm"] = [[beta * float(np.sum(s)) for s in row] for row in steps]
    if out["orm"]:
        scores["orm"] = np.reshape(out["orm"], (p, k))
    curves = {name: eval_metrics.best_of_n_accuracy_curve(np.asarray(s), correct_pk, ns, resamples=resamples, seed=seed)
              for name, s in scores.items()}
    diagnostics = {name: {"corr_correct": eval_metrics.pearson(s, correct_pk),
                          "corr_length": eval_metrics.pearson(s, out["lengths"])} for name, s in scores.items()}
    curves["majority"] = eval_metrics.majority_accuracy_curve(out["answers"], correct_pk, ns,
                                                              resamples=resamples, seed=seed)
    if out["steps"]:
        weights_pk = np.array([[eval_metrics.aggregate_steps(s, "prod_sigmoid", beta=beta) for s in row]
                               for row in steps])
        curves["prm_weighted_majority"] = eval_metrics.majority_accuracy_curve(
            out["answers"], correct_pk, ns, weights_pn=weights_pk, resamples=resamples, seed=seed)
    return {"ns": ns, "beta": beta, "resamples": resamples, "curves": curves, "diagnostics": diagnostics}


def plot_best_of_n(result: dict, path: pathlib.Path) -> None:
    """Accuracy vs N (log2 axis), one line with a std band per selection method."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 4))
    ax = fig.add_subplot()
    for name, curve in result["curves"].items():
        mean, std = np.asarray(curve["mean"]), np.asarray(curve["std"])
        ax.plot(curve["n"], mean, marker="o", label=name)
        ax.fill_between(curve["n"], mean - std, mean + std, alpha=0.15)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("N (samples per problem)")
    ax.set_ylabel("accuracy")
    ax.set_title("best-of-N")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)


def write_markdown(results: dict, path: pathlib.Path) -> None:
    lines = [f"# Evaluation: {results['model']} on {results['task']}", "",
             (f"{results['num_problems']} problems, k = {results['k']}, temperature "
              f"{results['temperature']}, top_p {results['top_p']}"), "",
             "| metric | value |", "|---|---|"]
    lines += [f"| {name} | {value:.4f} |" for name, value in results["metrics"].items()]
    data = results["data"]
    lines += ["", (f"rows skipped (malformed): {data['skipped_malformed']}, prompts dropped (too long): "
                   f"{data['dropped_too_long']}")]
    bon = results.get("best_of_n")
    if bon:
        header = "| method | " + " | ".join(f"N={n}" for n in bon["ns"]) + " |"
        lines += ["", "## Best-of-N accuracy", "", header,
                  "|---|" + "---|" * len(bon["ns"])]
        lines += [f"| {name} | " + " | ".join(f"{m:.3f}" for m in curve["mean"]) + " |"
                  for name, curve in bon["curves"].items()]
        lines += ["", "## Selector scores vs correctness and response length (Pearson r over all samples)", "",
                  "| selector | r with correctness | r with length |", "|---|---|---|"]
        lines += [f"| {name} | {d['corr_correct']:.3f} | {d['corr_length']:.3f} |"
                  for name, d in bon["diagnostics"].items()]
    path.write_text("\n".join(lines) + "\n")


# ---------------------------------------------------------------------------------- CLI
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
                        help="arithmetic | countdown (synthetic eval split) | jsonl:PATH (benchmark)")
    parser.add_argument("--num", type=int, default=100, help="number of problems (default 100)")
    parser.add_argument("--k", type=int, default=4, help="samples per problem for avg/maj/pass@k")
    parser.add_argument("--temperature", type=float, default=0.3, help="sampling temperature (0.3)")
    parser.add_argument("--top-p", type=float, default=0.95, help="nucleus sampling top-p (0.95)")
    parser.add_argument("--max-new-tokens", type=int, default=256, help="response length limit")
    parser.add_argument("--max-prompt-length", type=int, default=1024, help="longer prompts are dropped")
    parser.add_argument("--batch-prompts", type=int, default=8, help="prompts per sampling batch")
    parser.add_argument("--seed", type=int, default=0, help="synthetic split and sampling seed")
    parser.add_argument("--no-suffix", action="store_true",
                        help="do not append the Eurus 'Present the answer ... \\boxed{}' suffix to jsonl problems")
    parser.add_argument("--out", default="eval_out", help="output directory (results.json, results.md)")
    prm = parser.add_argument_group("best-of-N with an implicit PRM and/or an outcome reward model")
    prm.add_argument("--prm-workdir", help="a PRIME run directory, or an offline implicit PRM directory "
                                           "(prime_jax.train_reward), whose PRM ranks the k samples")
    prm.add_argument("--prm-step", type=int, help="checkpoint step of --prm-workdir (default: latest)")
    prm.add_argument("--reference", help="reference model directory (default: the PRM run's base model)")
    prm.add_argument("--beta", type=float, default=0.05, help="implicit-PRM beta (reward = beta * log-ratio)")
    prm.add_argument("--step-delimiter", default="\n", help="text that ends a reasoning step")
    prm.add_argument("--orm", help="an ORM directory (prime_jax.train_reward kind=orm, or a one-label "
                                   "*ForSequenceClassification HF directory) that ranks the k samples")
    prm.add_argument("--resamples", type=int, default=64, help="random N-subsets per N")
    parser.add_argument("--verifier-workers", type=int, default=1, help="verifier processes")
    return parser


def load_policy(args):
    if bool(args.workdir) == bool(args.hf):
        raise ValueError("give exactly one of --workdir and --hf")
    if args.workdir:
        return (*load_role(args.workdir, "policy", step=args.step), f"{args.workdir}@{args.step or 'latest'}")
    return from_pretrained(args.hf), load_tokenizer(args.tokenizer or args.hf), args.hf


def _reward_dir(path: str, kind: str) -> pathlib.Path | None:
    """``path/model`` of an offline reward-model directory of ``kind``; None if ``path`` is not one."""
    info_path = pathlib.Path(path) / "reward.json"
    if not info_path.exists():
        return None
    info = json.loads(info_path.read_text())
    if info.get("kind") != kind:
        raise ValueError(f"{info_path}: kind is {info.get('kind')!r}, expected {kind!r} here")
    return pathlib.Path(path) / "model"


def load_prm_pair(args):
    """(implicit PRM, its reference) of a PRIME run or an offline implicit-PRM directory."""
    offline = _reward_dir(args.prm_workdir, "implicit_prm")
    if offline is not None:
        reference = args.reference or json.loads((pathlib.Path(args.prm_workdir) / "reward.json").read_text())["reference"]
        return from_pretrained(offline), from_pretrained(reference)
    prm, _ = load_role(args.prm_workdir, "prm", step=args.prm_step)
    reference = args.reference or json.loads((pathlib.Path(args.prm_workdir) / "run.json").read_text())["base_model"]
    return prm, from_pretrained(reference)


def load_orm_dir(path: str):
    """The ORM of an offline ORM directory (``path/model``) or of an HF directory itself."""
    return load_orm(_reward_dir(path, "orm") or path)


def evaluate(args) -> dict:
    policy, tokenizer, name = load_policy(args)
    records, skipped = make_records(args.task, args.num, seed=args.seed, suffix="" if args.no_suffix else MATH_SUFFIX)
    prm_pair = load_prm_pair(args) if args.prm_workdir else None
    orm = load_orm_dir(args.orm) if args.orm else None
    with VerifierPool(args.verifier_workers, scorers={"countdown": countdown_reward}) as pool:
        out, dropped = collect(policy, tokenizer, records, pool, args, prm_pair, orm)
    out_dir = pathlib.Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    results = {"model": name, "task": args.task, "num_problems": len(out["correct"]), "k": args.k,
               "temperature": args.temperature, "top_p": args.top_p, "max_new_tokens": args.max_new_tokens,
               "metrics": sample_metrics(out, args.k),
               "data": {"skipped_malformed": sum(skipped.values()), "skipped_reasons": skipped,
                        "dropped_too_long": dropped},
               "best_of_n": None}
    if prm_pair is not None or orm is not None:
        results["best_of_n"] = best_of_n_curves(out, args.k, beta=args.beta, resamples=args.resamples, seed=args.seed)
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
