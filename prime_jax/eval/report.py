"""What ``evaluate`` writes: sample metrics, ``results.md`` and the best-of-N plot."""

from __future__ import annotations

import pathlib

import numpy as np

from prime_jax.eval import metrics as eval_metrics


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
