"""Rule-based outcome verifiers (SPEC section 3); pure Python, no JAX.

- `math.verify(response, ground_truth, *, timeout)` -> 0.0 / 1.0
- `code.verify(response, tests_json, *, timeout)` -> [0, 1], run in `sandbox.run_tests`, a
  sandbox that fails closed (`SandboxUnavailable` names the missing layer and its fix)
- `VerifierPool`: batch scoring in worker processes, `submit(rows) -> Future[list[float]]`
"""

from prime_jax.verifiers import code, math, sandbox
from prime_jax.verifiers.pool import VerifierPool, as_row, score_row
from prime_jax.verifiers.sandbox import (SandboxLimits, SandboxReport, SandboxUnavailable,
                                        run_tests)
from prime_jax.verifiers.stats import Verdict, VerifierStats

verify_math = math.verify
verify_code = code.verify

__all__ = [
    "SandboxLimits", "SandboxReport", "SandboxUnavailable", "Verdict", "VerifierPool",
    "VerifierStats", "as_row", "code", "math", "run_tests", "sandbox", "score_row",
    "verify_code", "verify_math",
]
