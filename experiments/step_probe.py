"""Linear probe: does a model's final hidden state at a step end carry that step's correctness?

    python experiments/step_probe.py --model runs/pb/arith_sft_model \
        --train runs/pb/arithmetic_dev.jsonl --test prime_jax/assets/processbench/arithmetic.jsonl

ProcessBench-format files give per-step labels (a step is correct iff it comes before the first
error; steps after the first error are left out, as Let's Verify labels). Features are the frozen
model's final-norm hidden states at each step's end token and at the token before it; a logistic
regression (full-batch gradient descent, L2 1e-3, standardised features) is fit on --train and
scored on --test. Held-out accuracy at the label rate means the head an explicit PRM reads starts
with no linearly readable signal. Prints a table (a diagnostic; nothing is appended).
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import numpy as np

from prime_jax.data import load_tokenizer
from prime_jax.eval.processbench import encode_record, load_processbench
from prime_jax.models import from_pretrained


def step_features(model, tokenizer, path: str) -> tuple[np.ndarray, np.ndarray]:
    """(features (n, 2D): hidden state at the step end and at the token before it, labels (n,))."""
    forward = jax.jit(lambda ids: model.hidden_states(ids, attention_mask_bt=jnp.ones_like(ids))[0])
    records, _ = load_processbench(path)
    features, labels = [], []
    for record in records:
        encoded = encode_record(tokenizer, record, "\n")
        ids = jnp.asarray([encoded.prompt_ids + encoded.response_ids], jnp.int32)
        h_td = np.asarray(forward(ids))[0, len(encoded.prompt_ids):]
        for k, end in enumerate(encoded.step_ends):
            if record.label != -1 and k > record.label:
                break
            features.append(np.concatenate([h_td[end], h_td[end - 1]]))
            labels.append(float(record.label == -1 or k < record.label))
    return np.asarray(features), np.asarray(labels)


def probe_accuracy(x_train, y_train, x_test, y_test, steps: int = 3000, lr: float = 0.5) -> float:
    """Held-out accuracy of ``sigmoid(x w + b) > 0.5`` fit by gradient descent on the BCE."""
    mu, sd = x_train.mean(0), x_train.std(0) + 1e-6
    a, b_test = (x_train - mu) / sd, (x_test - mu) / sd
    w, b = np.zeros(a.shape[1]), 0.0
    for _ in range(steps):
        p = 1 / (1 + np.exp(-(a @ w + b)))
        w -= lr * (a.T @ (p - y_train) / len(y_train) + 1e-3 * w)
        b -= lr * np.mean(p - y_train)
    return float(np.mean(((b_test @ w + b) > 0) == (y_test > 0.5)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--tokenizer", default="char")
    parser.add_argument("--train", required=True)
    parser.add_argument("--test", required=True)
    args = parser.parse_args()
    model, tokenizer = from_pretrained(args.model), load_tokenizer(args.tokenizer)
    x_train, y_train = step_features(model, tokenizer, args.train)
    x_test, y_test = step_features(model, tokenizer, args.test)
    d = x_train.shape[1] // 2
    print(f"| features | held-out probe accuracy | label rate (n = {len(y_test)}) |\n|---|---|---|")
    for name, cols in (("step end token", slice(0, d)), ("token before it", slice(d, 2 * d)),
                       ("both", slice(0, 2 * d))):
        accuracy = probe_accuracy(x_train[:, cols], y_train, x_test[:, cols], y_test)
        print(f"| {name} | {accuracy:.3f} | {y_test.mean():.3f} |")


if __name__ == "__main__":
    main()
