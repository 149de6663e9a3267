"""Best-of-N curves of every selector over k verified samples per problem.

A selector scores each sample; best-of-N accuracy at N is the mean correctness of the top-scored
sample among random N-subsets (``eval.metrics``). Selectors read each sample's step scores from a
step verifier (``out["step_scores"][kind]``, ``step_verifiers``): the implicit PRM's step rewards
``r_s = beta * sum_{t in s} q_t`` aggregated as min / sum / last / product of ``sigmoid(r_s)``,
and its implicit outcome score ``sum_s r_s = beta * sum_t q_t``; an explicit PRM's step logits
``z_s`` as the product of ``sigmoid(z_s)`` (Let's Verify), the min (Math-Shepherd) or the last
step; an ORM's score at the response's end (its last step); majority vote and majority votes
weighted by each PRM's product score.
"""

from __future__ import annotations

import numpy as np

from prime_jax.eval import metrics as eval_metrics

FAMILIES = {  # verifier kind -> (curve prefix, {curve: aggregation of the step scores})
    "implicit_prm": ("prm", {"prm_min": "min", "prm_sum": "sum", "prm_last": "last", "prm_prod": "prod_sigmoid"}),
    "explicit_prm": ("explicit", {"explicit_prod": "prod_sigmoid", "explicit_min": "min", "explicit_last": "last"}),
}


def best_of_n_curves(out, k: int, *, beta: float | None, resamples: int, seed: int) -> dict:
    """Best-of-N curves: every aggregation of each process verifier's step scores (``FAMILIES``),
    the implicit outcome score, the ORM's last-step score, and majority votes, plain and weighted
    by each PRM's product score. ``beta`` (the implicit PRM's, already in its scores) is recorded."""
    correct_pk = np.asarray(out["correct"], np.float64)
    p = correct_pk.shape[0]
    ns = sorted({2 ** i for i in range(int(np.log2(k)) + 1)} | {k})
    step_scores = out.get("step_scores", {})
    scores, weights = {}, {}
    for kind, (prefix, names) in FAMILIES.items():
        if not step_scores.get(kind):
            continue
        steps = [step_scores[kind][i * k:(i + 1) * k] for i in range(p)]
        for name, how in names.items():
            scores[name] = [[eval_metrics.aggregate_steps(s, how) for s in row] for row in steps]
        weights[f"{prefix}_weighted_majority"] = np.array(
            [[eval_metrics.aggregate_steps(s, "prod_sigmoid") for s in row] for row in steps])
        if kind == "implicit_prm":
            scores["implicit_orm"] = [[float(np.sum(s)) for s in row] for row in steps]
    if step_scores.get("orm"):
        scores["orm"] = np.reshape([s[-1] if s else -np.inf for s in step_scores["orm"]], (p, k))
    curves = {name: eval_metrics.best_of_n_accuracy_curve(np.asarray(s), correct_pk, ns, resamples=resamples, seed=seed)
              for name, s in scores.items()}
    diagnostics = {name: {"corr_correct": eval_metrics.pearson(s, correct_pk),
                          "corr_length": eval_metrics.pearson(s, out["lengths"])} for name, s in scores.items()}
    curves["majority"] = eval_metrics.majority_accuracy_curve(out["answers"], correct_pk, ns,
                                                              resamples=resamples, seed=seed)
    for name, weights_pk in weights.items():
        curves[name] = eval_metrics.majority_accuracy_curve(out["answers"], correct_pk, ns, weights_pn=weights_pk,
                                                            resamples=resamples, seed=seed)
    return {"ns": ns, "beta": beta, "resamples": resamples, "curves": curves, "diagnostics": diagnostics}
