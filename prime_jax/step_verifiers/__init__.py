"""Step verifiers: one type for "a trained model that scores every step of tokenised responses"
(``base.StepVerifier.score_steps -> StepScores``), one implementation per kind (explicit PRM,
ORM read at step ends, implicit PRM online or offline, PAV = a Q model plus a Best-of-K prover)
and one loader that reads a directory's record and returns the right one (``load``)."""

from prime_jax.step_verifiers.base import StepScores, StepVerifier
from prime_jax.step_verifiers.explicit_prm import ExplicitPRMVerifier
from prime_jax.step_verifiers.implicit_prm import ImplicitPRMVerifier
from prime_jax.step_verifiers.load import load_pav_verifier, load_step_verifier, verifier_kind
from prime_jax.step_verifiers.orm import ORMStepVerifier
from prime_jax.step_verifiers.pav import PavVerifier

__all__ = ["ExplicitPRMVerifier", "ImplicitPRMVerifier", "ORMStepVerifier", "PavVerifier", "StepScores",
           "StepVerifier", "load_pav_verifier", "load_step_verifier", "verifier_kind"]
