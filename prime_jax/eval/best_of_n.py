"""Best-of-N curves of every selector over k verified samples per problem.

A selector scores each sample; best-of-N accuracy at N is the mean correctness of the top-scored
sample among random N-subsets (``eval.metrics``). Selectors: the implicit PRM's step aggregations
(min / sum / last / product of sigmoids of ``beta * r_s``), the implicit outcome score
``beta * sum_t q_t``, an explicit PRM's step logits ``z_s`` aggregated as the product of
``sigmoid(z_s)`` (Let's Verify), the min (Math-Shepherd) or the last step, a trained ORM, majority
vote and majority votes weighted by each PRM's product score.
"""

from __future__ import annotations

import numpy as np

from prime_jax.eval import metrics as eval_metrics

PRM_CURVES = {"prm_min": "min", "prm_sum": "sum", "prm_last": "last", "prm_prod": "prod_sigmoid"}
EXPLICIT_CURVES = {"explicit_prod": "prod_sigmoid", "explicit_min": "min", "explicit_last": "last"}


def best_of_n_curves(out, k: int, *, beta: float | None, resamples: int, seed: int) -> dict:
    """Best-of-N curves: every implicit-PRM aggregation and the implicit outcome score (when the
    samples have implicit step scores ``out["steps"]``), every explicit-PRM aggregation (when they
    have explicit step logits ``out["explicit_steps"]``), the trained ORM (``out["orm"]``), and
    majority votes, plain and weighted by each PRM's product score."""
    correct_pk = np.asarray(out["correct"], np.float64)
    p = correct_pk.shape[0]
    ns = sorted({2 ** i for i in range(int(np.log2(k)) + 1)} | {k})
    families = [(prefix, curves, [out[key][i * k:(i + 1) * k] for i in range(p)], scale)
                for key, prefix, curves, scale in (("steps", "prm", PRM_CURVES, beta),
                                                    ("explicit_steps", "explicit", EXPLICIT_CURVES, 1.0))
                if out.get(key)]
    scores, weights = {}, {}
    for prefix, names, steps, scale in families:
        for name, how in names.items():
            scores[name] = [[eval_metrics.aggregate_steps(s, how, beta=scale) for s in row] for row in steps]
        weights[f"{prefix}_weighted_majority"] = np.array(
            [[eval_metrics.aggregate_steps(s, "prod_sigmoid", beta=scale) for s in row] for row in steps])
        if prefix == "prm":
            scores["implicit_orm"] = [[beta * float(np.sum(s)) for s in row] for row in steps]
    if out.get("orm"):
        scores["orm"] = np.reshape(out["orm"], (p, k))
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
