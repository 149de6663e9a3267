"""Best-of-N curves of every selector over k verified samples per problem.

A selector scores each sample; best-of-N accuracy at N is the mean correctness of the top-scored
sample among random N-subsets (``eval.metrics``). Selectors: the implicit PRM's step aggregations
(min / sum / last / product of sigmoids), the implicit outcome score ``beta * sum_t q_t``, a trained
ORM, majority vote and PRM-weighted majority vote.
"""

from __future__ import annotations

import numpy as np

from prime_jax.eval import metrics as eval_metrics

PRM_CURVES = {"prm_min": "min", "prm_sum": "sum", "prm_last": "last", "prm_prod": "prod_sigmoid"}


def best_of_n_curves(out, k: int, *, beta: float | None, resamples: int, seed: int) -> dict:
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
