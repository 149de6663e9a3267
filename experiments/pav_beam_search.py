"""Step-level beam search (PAV, implicit / explicit PRM) vs best-of-N and majority at matched
sampled tokens, on held-out arithmetic problems.

    python experiments/pav_beam_search.py [--num 128] [--beams 1 2 4 8] [--bon 1 2 4 8 16 32]
        [--alpha 0.5] [--k 4] [--sweep] [--policy DIR] [--explicit-prm DIR] [--implicit-prm DIR]
        [--orm DIR]

Best-of-N: ``max(--bon)`` samples of the policy per problem (temperature ``--temperature``), each
N scored on 64 random N-subsets; its cost is N * (mean response length) sampled tokens. Beam search
(``prime_jax.search.beam_search``, C = ``--proposals``): its cost is every proposal's tokens. Step
verifiers (``prime_jax.step_verifiers``): PAV effective reward ``Q^pi + alpha A^{BoK}`` with Q^pi
from the explicit PRM's ``sigmoid(z)`` (``pav_explicit``) or from the implicit PRM's
``sigmoid(beta * sum log-ratio)`` (``pav_implicit``), the explicit PRM's step score
(``explicit``, the same order as pav_explicit with alpha 0), the implicit PRM's step reward
(``implicit``). Final pick: the Q model read at the response's end for the explicit family, the
implicit PRM's min step reward for the implicit one (``search.scorers.final_scorer``).
Correct = the boxed answer equals the ground truth. Prints markdown tables and one summary line.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import time

import jax
import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from prime_jax.data import PromptPipeline, countdown_reward, left_pad, load_tokenizer  # noqa: E402
from prime_jax.eval import metrics as eval_metrics  # noqa: E402
from prime_jax.eval.benchmark import make_records  # noqa: E402
from prime_jax.eval.samples import final_answer  # noqa: E402
from prime_jax.experience.generate import decode_responses  # noqa: E402
from prime_jax.data.steps import delimiter_ids  # noqa: E402
from prime_jax.models import from_pretrained  # noqa: E402
from prime_jax.rollout import SamplingConfig, sample  # noqa: E402
from prime_jax.search.beam_search import BeamSearchConfig, append_steps, beam_search  # noqa: E402
from prime_jax.search.scorers import final_scorer  # noqa: E402
from prime_jax.step_verifiers import PavVerifier, load_step_verifier  # noqa: E402
from prime_jax.verifiers.answer import normalize_answer  # noqa: E402


TASK_DEFAULTS = {
    "arithmetic": {"policy": "runs/pb/arith_sft_model", "explicit_prm": "runs/pb/eprm_exact_lr3e-4_e10",
                   "implicit_prm": "runs/pb/prm_offline", "orm": "runs/pb/orm"},
    "countdown": {"policy": "runs/countdown_sft/sft_model", "explicit_prm": "none",
                  "implicit_prm": "runs/pb/prm_offline_cd", "orm": "runs/pb/orm_cd"},
}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", default="arithmetic", choices=sorted(TASK_DEFAULTS))
    parser.add_argument("--policy", help="policy HF directory (default: the task's SFT model)")
    parser.add_argument("--explicit-prm", help="explicit PRM directory ('none': skip the explicit family)")
    parser.add_argument("--implicit-prm", help="offline implicit PRM directory")
    parser.add_argument("--orm", help="offline ORM directory")
    parser.add_argument("--num", type=int, default=128, help="held-out problems")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--seeds", type=int, nargs="+", help="several seeds (problem sets and samples): mean +- std")
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--bon", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32])
    parser.add_argument("--beams", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--proposals", type=int, default=3)
    parser.add_argument("--alpha", type=float, default=0.5)
    parser.add_argument("--k", type=int, default=4)
    parser.add_argument("--methods", nargs="+", help="default: pav_explicit explicit implicit pav_implicit "
                                                      "(the explicit ones only with an explicit PRM)")
    parser.add_argument("--sweep", action="store_true", help="alpha and K sweep of pav_explicit/pav_implicit at B = --sweep-beams")
    parser.add_argument("--sweep-beams", type=int, default=4)
    parser.add_argument("--max-response-tokens", type=int, default=48)
    parser.add_argument("--max-step-tokens", type=int, default=16)
    parser.add_argument("--chunk", type=int, default=64, help="problems per beam-search call")
    args = parser.parse_args(argv)
    for name, value in TASK_DEFAULTS[args.task].items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if args.explicit_prm == "none":
        args.explicit_prm = None
    if args.methods is None:
        args.methods = (["pav_explicit", "explicit"] if args.explicit_prm else []) + ["implicit", "pav_implicit"]
    return args


class Setup:
    """Policy, verifiers, tokenizer and the left-padded held-out prompts."""

    def __init__(self, args):
        self.policy = from_pretrained(args.policy)
        self.tokenizer = load_tokenizer(args.policy)
        self.task = args.task
        self.records, _ = make_records(args.task, args.num, seed=args.seed, suffix="")
        pipeline = PromptPipeline(self.records, self.tokenizer, num_samples=1, shuffle=False, max_prompt_length=64)
        seqs = [pipeline.prompt_tokens(i) for i in range(len(pipeline))]
        width = -(-max(map(len, seqs)) // 8) * 8
        self.pad_id = pipeline.pad_id
        self.ids_pt, self.mask_pt = (np.asarray(x, np.int32) for x in left_pad(seqs, width, self.pad_id))
        self.truth = [normalize_answer(r.ground_truth) for r in self.records]
        self.ground_truth = [r.ground_truth for r in self.records]
        self.eos_id = self.tokenizer.eos_token_id
        self.delimiter = delimiter_ids(self.tokenizer, "\n")
        assert len(self.delimiter) == 1, "the step delimiter must be one token to stop a proposal on it"
        self.implicit = load_step_verifier(args.implicit_prm, kind="implicit_prm", field="--implicit-prm")
        self.explicit = load_step_verifier(args.explicit_prm, kind="explicit_prm", field="--explicit-prm") \
            if args.explicit_prm else None
        self.orm = load_step_verifier(args.orm, kind="orm", field="--orm")

    def correct(self, tokens_nl, mask_nl, problem_n):
        texts = decode_responses(self.tokenizer, np.asarray(tokens_nl), np.asarray(mask_nl))
        answers = [final_answer(t) for t in texts]
        if self.task == "countdown":  # a valid chain of operations over the given numbers
            ok = [countdown_reward(t, self.ground_truth[p]) for t, p in zip(texts, problem_n)]
        else:
            ok = [a is not None and a == self.truth[p] for a, p in zip(answers, problem_n)]
        return np.array(ok, float), answers


def best_of_n(setup: Setup, args):
    """Accuracy curves of every selector and the mean response length."""
    n_max = max(args.bon)
    cfg = SamplingConfig(max_new_tokens=args.max_response_tokens, temperature=args.temperature,
                         eos_id=setup.eos_id, pad_id=setup.pad_id)
    p = len(setup.records)
    out = sample(setup.policy, setup.ids_pt, setup.mask_pt, key=jax.random.key(args.seed + 1), config=cfg,
                 num_samples=n_max)
    tokens_nl, mask_nl = np.asarray(out.tokens), np.asarray(out.mask)
    problem_n = np.repeat(np.arange(p), n_max)
    correct_n, answers = setup.correct(tokens_nl, mask_nl, problem_n)
    width = setup.ids_pt.shape[1] + args.max_response_tokens
    pad_cols = np.zeros((p * n_max, args.max_response_tokens), np.int32)
    prompts = np.repeat(setup.ids_pt, n_max, 0)
    prompt_mask = np.repeat(setup.mask_pt, n_max, 0)
    full_nw, full_mask_nw = append_steps(np.concatenate([pad_cols, prompts], 1), np.concatenate([pad_cols, prompt_mask], 1),
                                         tokens_nl, mask_nl, setup.pad_id)
    resp_mask_nw = (np.arange(width)[None, :] >= width - mask_nl.sum(1)[:, None]).astype(np.int32)
    scorers = {"ORM": final_scorer(setup.orm, "last"), "implicit PRM, min step": final_scorer(setup.implicit, "min")}
    if setup.explicit is not None:
        scorers["explicit PRM, product"] = final_scorer(setup.explicit, "log_prod")
        scorers["explicit PRM Q at end"] = final_scorer(setup.explicit, "last")
    curves = {}
    for name, scorer in scorers.items():
        scores = np.concatenate([np.asarray(scorer(full_nw[i:i + 512], full_mask_nw[i:i + 512], resp_mask_nw[i:i + 512]))
                                 for i in range(0, len(full_nw), 512)])
        curves[name] = eval_metrics.best_of_n_accuracy_curve(scores.reshape(p, n_max), correct_n.reshape(p, n_max),
                                                             args.bon, resamples=64, seed=args.seed)["mean"]
    answers_pn = [answers[i * n_max:(i + 1) * n_max] for i in range(p)]
    curves["majority"] = eval_metrics.majority_accuracy_curve(answers_pn, correct_n.reshape(p, n_max), args.bon,
                                                              resamples=64, seed=args.seed)["mean"]
    return curves, float(mask_nl.sum(1).mean())


def make_scorers(setup: Setup, method: str, alpha: float, k: int):
    """(step verifier, final scorer) of a beam-search method."""
    explicit_final = final_scorer(setup.explicit, "last") if setup.explicit else None
    implicit_final = final_scorer(setup.implicit, "min")
    if method == "pav_explicit":
        return PavVerifier(setup.explicit, alpha=alpha, best_of_k=k), explicit_final
    if method == "explicit":
        return setup.explicit, explicit_final
    if method == "implicit":
        return setup.implicit, implicit_final
    if method == "pav_implicit":
        return PavVerifier(setup.implicit.with_reading("cumulative"), alpha=alpha, best_of_k=k), implicit_final
    raise ValueError(f"unknown method {method!r}")


def run_beam(setup: Setup, args, method: str, beams: int, *, alpha: float, k: int):
    """(accuracy, mean sampled tokens per problem, seconds) of one beam-search setting."""
    config = BeamSearchConfig(beam_width=beams, proposals=args.proposals, max_steps=8,
                              max_step_tokens=args.max_step_tokens, max_response_tokens=args.max_response_tokens,
                              eos_id=setup.eos_id, step_stop_ids=setup.delimiter, pad_id=setup.pad_id,
                              temperature=args.temperature)
    step_scorer, final_scorer = make_scorers(setup, method, alpha, k)
    p, start = len(setup.records), time.time()
    correct, tokens = [], []
    for first in range(0, p, args.chunk):
        rows = np.minimum(np.arange(first, first + args.chunk), p - 1)  # a short last chunk repeats a problem
        real = min(args.chunk, p - first)
        result = beam_search(setup.policy, setup.ids_pt[rows], setup.mask_pt[rows],
                             key=jax.random.key(args.seed * 1000 + first + 7), step_scorer=step_scorer,
                             final_scorer=final_scorer, config=config)
        ok, _ = setup.correct(result.response_pl[:real], result.response_mask_pl[:real], rows[:real])
        correct.append(ok)
        tokens.append(result.sampled_tokens_p[:real])
    return float(np.concatenate(correct).mean()), float(np.concatenate(tokens).mean()), time.time() - start


def bon_at_tokens(curves, mean_len, ns, tokens):
    """Each best-of-N curve read at ``tokens`` sampled tokens (linear in log N between measured N)."""
    log_n = np.log(np.asarray(ns, float))
    x = np.log(max(tokens / mean_len, 1.0))
    return {name: float(np.interp(x, log_n, acc)) for name, acc in curves.items()}


def fmt(values) -> str:
    """``mean`` (one seed) or ``mean +- std`` over seeds."""
    values = np.asarray(values, float)
    return f"{values.mean():.3f}" if values.size == 1 else f"{values.mean():.3f} +- {values.std():.3f}"


def main(argv=None) -> int:
    args = parse_args(argv)
    start = time.time()
    seeds = args.seeds or [args.seed]
    curves, lengths, beams_out, sweep_out = {}, [], {}, {}
    for seed in seeds:
        seed_args = argparse.Namespace(**{**vars(args), "seed": seed})
        setup = Setup(seed_args)
        seed_curves, mean_len = best_of_n(setup, seed_args)
        lengths.append(mean_len)
        for name, acc in seed_curves.items():
            curves.setdefault(name, []).append(acc)
        for beams in args.beams:
            for method in args.methods:
                acc, tokens, secs = run_beam(setup, seed_args, method, beams, alpha=args.alpha, k=args.k)
                ref = bon_at_tokens(seed_curves, mean_len, args.bon, tokens)
                beams_out.setdefault((method, beams), []).append((acc, tokens, secs, ref))
                print(f"seed {seed} {method} B={beams}: acc {acc:.3f} tokens {tokens:.0f} ({secs:.0f} s)",
                      file=sys.stderr, flush=True)
        if args.sweep:
            for method in [m for m in ("pav_explicit", "pav_implicit") if m in args.methods]:
                for alpha, k in ((0.0, 1), (0.5, 1), (0.5, 4), (0.5, 16), (1.0, 4), (2.0, 4), (4.0, 4)):
                    acc, tokens, _ = run_beam(setup, seed_args, method, args.sweep_beams, alpha=alpha, k=k)
                    sweep_out.setdefault((method, alpha, k), []).append((acc, tokens))
    mean_len = float(np.mean(lengths))
    print(f"## Best-of-N ({args.num} held-out {args.task} problems x seeds {seeds}, T={args.temperature}, "
          f"mean response {mean_len:.1f} tokens)\n")
    print("| selector | " + " | ".join(f"N={n} ({n * mean_len:.0f} tok)" for n in args.bon) + " |")
    print("|---|" + "---|" * len(args.bon))
    for name, acc_sn in curves.items():
        print(f"| {name} | " + " | ".join(fmt(col) for col in np.asarray(acc_sn).T) + " |")
    print(f"\n## Step-level beam search (C={args.proposals}, alpha={args.alpha}, K={args.k}) vs best-of-N "
          "read at the same sampled tokens (same seeds)\n")
    names = {name: short for name, short in (("ORM", "orm_bon"), ("implicit PRM, min step", "implicit_bon"),
                                             ("explicit PRM, product", "explicit_bon"), ("majority", "majority"))
             if name in curves}
    print("| method | B | sampled tok/problem | accuracy | " + " | ".join(f"{n} BoN" for n in names) + " | s |")
    print("|---|---|---|---|" + "---|" * len(names) + "---|")
    summary = {}
    for (method, beams), runs in beams_out.items():
        acc, tokens, secs = (np.array([r[i] for r in runs]) for i in range(3))
        refs = {name: [r[3][name] for r in runs] for name in names}
        print(f"| {method} | {beams} | {tokens.mean():.0f} | {fmt(acc)} | " + " | ".join(fmt(v) for v in refs.values())
              + f" | {secs.mean():.0f} |")
        if beams == args.sweep_beams:
            summary[method] = (acc.mean(), tokens.mean(), {names[n]: float(np.mean(v)) for n, v in refs.items()})
    if sweep_out:
        print(f"\n## alpha and K sweep (B={args.sweep_beams}, C={args.proposals})\n")
        print("| method | alpha | K | sampled tok/problem | accuracy |")
        print("|---|---|---|---|---|")
        for (method, alpha, k), runs in sweep_out.items():
            print(f"| {method} | {alpha} | {k} | {np.mean([r[1] for r in runs]):.0f} | {fmt([r[0] for r in runs])} |")
    line = f"pav_beam_search: B={args.sweep_beams} seeds={len(seeds)}"
    if summary:
        first = next(iter(summary.values()))
        line += f" tokens~{first[1]:.0f}" + "".join(f" {m}={a:.3f}" for m, (a, _, _) in summary.items())
        line += "".join(f" {name}={value:.3f}" for name, value in first[2].items() if name != "explicit_bon")
    print(f"\n(total {time.time() - start:.0f} s)\n{line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
