"""CLI: ProcessBench evaluation of a step verifier (find the earliest wrong step).

    python -m prime_jax.processbench --data FILE.jsonl [--data FILE2.jsonl ...]
        (--explicit-prm DIR | --prm-workdir DIR [--prm-step N] [--reference DIR] --threshold-split NAME
         | --orm DIR) [--threshold-split NAME] [--batch-size N] --out DIR

Each --data file is one split, named by its file stem (ProcessBench's gsm8k.jsonl, math.jsonl,
olympiadbench.jsonl, omnimath.jsonl work unchanged; the generated synthetic sets are
prime_jax/assets/processbench/{arithmetic,countdown}.jsonl). Rows: {"id", "problem", "steps":
[str, ...], "label": earliest wrong step or -1, "final_answer_correct" (optional), "kind" or
"error_kind" (optional)}; malformed rows are skipped and listed with file:line. Nothing is
downloaded. The error-kind sets prime_jax/assets/processbench/arithmetic_{dev,heldout,heldout2,heldout3}_kinds.jsonl
(experiments/make_processbench.py --kinds) name each row's kind: their splits get one table per kind.
prime_jax/assets/processbench/gsm8k_public_rows.jsonl is ProcessBench's own first gsm8k row (gsm8k-0), to
try the path on real text: it needs a verifier whose tokenizer reads English (a row with characters
the tokenizer maps to its unknown token is refused) and ``--step-delimiter`` as the verifier was trained.

Per split: accuracy on erroneous rows (first error located exactly), accuracy on correct rows
(no step flagged) and F1 = their harmonic mean; a step is flagged when its score is below the
threshold. Step scores: an explicit PRM's probability (threshold 0.5); an ORM read at every step
end, sigmoid of its score there (threshold 0.5); an implicit PRM's sigmoid(beta * sum of the
step's token log-ratios), with the beta it was trained with, whose threshold is chosen to maximise
F1 on --threshold-split (required: a dev split, not one you report) and reused on the others.
--threshold-split also tunes the explicit PRM's or ORM's threshold instead of 0.5. The F1 of the
threshold's own split is in-sample: marked so and left out of the mean F1. Writes results.json
and results.md into --out and prints the table(s).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

from tqdm import tqdm

from prime_jax.eval import processbench
from prime_jax.step_verifiers import StepVerifier, load_step_verifier


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m prime_jax.processbench", formatter_class=argparse.RawDescriptionHelpFormatter,
        description=__doc__.split("\n\n", 1)[1])
    parser.add_argument("--data", action="append", required=True, metavar="FILE.jsonl",
                        help="a ProcessBench-format jsonl split (repeatable; the split is named by the file stem)")
    verifier = parser.add_mutually_exclusive_group(required=True)
    verifier.add_argument("--explicit-prm", metavar="DIR", help="an explicit PRM directory (threshold 0.5)")
    verifier.add_argument("--prm-workdir", metavar="DIR",
                          help="a PRIME run directory or an offline implicit PRM (prime_jax.train_reward)")
    verifier.add_argument("--orm", metavar="DIR", help="an ORM directory (prime_jax.train_reward kind=orm, or a "
                                                       "one-label *ForSequenceClassification HF directory)")
    parser.add_argument("--prm-step", type=int, help="checkpoint step of --prm-workdir (default: latest)")
    parser.add_argument("--reference", metavar="DIR", help="reference model of --prm-workdir (default: the one it "
                                                           "was trained against)")
    parser.add_argument("--threshold-split", metavar="NAME",
                        help="choose the threshold maximising F1 on this split (required for an implicit PRM; "
                             "explicit PRM / ORM default: fixed 0.5); its F1 is marked in-sample")
    parser.add_argument("--step-delimiter", help="text joining the steps (default: the delimiter the PRM was "
                                                 "trained with; a newline for an ORM or a bare HF directory)")
    parser.add_argument("--batch-size", type=int, default=16, help="rows per forward pass (16)")
    parser.add_argument("--out", required=True, help="output directory (results.json, results.md)")
    return parser


def load_verifier(args) -> StepVerifier:
    """The step verifier of the one verifier flag given (the loader checks the directory holds that kind)."""
    if (args.prm_step is not None or args.reference) and not args.prm_workdir:
        raise ValueError("--prm-step and --reference go with --prm-workdir")
    if args.prm_workdir and not args.threshold_split:
        raise ValueError("an implicit PRM's threshold is chosen on data: pass --threshold-split NAME, a dev --data "
                         "split other than the ones you report (its F1 is in-sample)")
    flag, path, kind = next((f, p, k) for f, p, k in (("--prm-workdir", args.prm_workdir, "implicit_prm"),
                                                      ("--orm", args.orm, "orm"),
                                                      ("--explicit-prm", args.explicit_prm, "explicit_prm")) if p)
    return load_step_verifier(path, kind=kind, step=args.prm_step, reference=args.reference,
                              step_delimiter=args.step_delimiter, field=flag)


def load_splits(paths) -> tuple[dict, dict]:
    """``({split: records}, {split: {reason: ["file:line", ...]}})``, one split per file."""
    splits, skipped = {}, {}
    for path in map(pathlib.Path, paths):
        if path.stem in splits:
            raise ValueError(f"two --data files are named {path.stem!r}: split names come from file stems")
        records, skipped[path.stem] = processbench.load_processbench(path)
        if not records:
            raise ValueError(f"{path}: no valid ProcessBench rows (skipped: {skipped[path.stem]})")
        splits[path.stem] = records
    return splits, skipped


def _progress(batches):
    return tqdm(batches, desc="processbench", unit="batch")


def run(args) -> dict:
    splits, skipped = load_splits(args.data)
    verifier = load_verifier(args)
    results = processbench.evaluate_splits(verifier, splits, threshold_split=args.threshold_split,
                                           batch_size=args.batch_size, progress=_progress)
    results = {"verifier": {"kind": verifier.kind, "name": verifier.name, "step_delimiter": verifier.step_delimiter},
               "data": {name: str(path) for name, path in zip(splits, args.data)},
               **results, "mean_f1": processbench.mean_f1(results["splits"]),
               "skipped_malformed": {name: {reason: len(where) for reason, where in reasons.items()}
                                     for name, reasons in skipped.items()},
               "skipped_rows": skipped}
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2))
    (out / "results.md").write_text(markdown(results))
    return results


def markdown(results: dict) -> str:
    verifier, threshold = results["verifier"], results["threshold"]
    lines = ["# ProcessBench", "", f"verifier: {verifier['kind']} `{verifier['name']}`",
             f"threshold: {threshold['value']:.4g} ({threshold['rule']})", "",
             processbench.markdown_table(results), ""]
    for name, reasons in results["skipped_malformed"].items():
        if reasons:
            lines.append(f"{name}: skipped (malformed): {sum(reasons.values())} ({reasons})")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        results = run(args)
    except (FileNotFoundError, ValueError, RuntimeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(markdown(results))
    for name, rows in results["skipped_rows"].items():
        for reason, where in rows.items():
            print(f"{name}: skipped {len(where)} row(s), {reason}: {', '.join(where[:5])}"
                  + (" ..." if len(where) > 5 else ""), file=sys.stderr)
    print(f"wrote {pathlib.Path(args.out) / 'results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
