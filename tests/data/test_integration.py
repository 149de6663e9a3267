"""Cross-module contracts: light imports, and the math verifier agreeing with our labels."""

import subprocess
import sys

from prime_jax.data import make_synthetic_sft_examples
from prime_jax.verifiers import math as math_verifier


def test_importing_data_does_not_load_tensorflow_or_seqio():
    code = ("import sys, prime_jax.data, prime_jax.data.task_config; from prime_jax.data import *; "
            "assert 'tensorflow' not in sys.modules and 'seqio' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_math_verifier_scores_arithmetic_traces_like_the_labels():
    for example in make_synthetic_sft_examples("arithmetic", 11, 40):
        expected = 1.0 if example.step_labels[-1] else 0.0
        assert math_verifier.verify(example.response, example.ground_truth) == expected
