"""One loader: a directory's record decides which step verifier it holds, once.

    run.json                      a PRIME run: its online implicit PRM (checkpoint ``step``,
                                  default latest) against the run's base model, with the beta and
                                  step delimiter of its ``reward`` config
    reward.json  kind ...         ``train_reward``: "implicit_prm" (its ``reward`` config and
                                  ``reference``), "explicit_prm" (its ``step_delimiter``; a PRM
                                  trained on Monte-Carlo values is a PAV Q model), "orm"
    config.json  architectures    a bare Hugging Face directory: ``*ForTokenClassification`` is an
                                  explicit PRM, ``*ForSequenceClassification`` an ORM (newline steps)

``kind`` (optional) is what the caller expects; another kind is an error naming the path and the
record field. Errors name ``field`` (the flag or config field the path came from). With ``mesh``
every weight is placed in its ``PARAM_RULES`` sharding on it, so ``score_steps`` runs on the mesh.
"""

from __future__ import annotations

import json
import pathlib

import jax
from flax import nnx

from prime_jax.data import load_tokenizer
from prime_jax.data.steps import delimiter_ids
from prime_jax.models import from_pretrained, load_explicit_prm, load_orm, param_shardings
from prime_jax.run_dir import RunInfo, load_role, read_reward_model_info
from prime_jax.step_verifiers.base import StepVerifier
from prime_jax.step_verifiers.explicit_prm import ExplicitPRMVerifier
from prime_jax.step_verifiers.implicit_prm import ImplicitPRMVerifier
from prime_jax.step_verifiers.orm import ORMStepVerifier
from prime_jax.step_verifiers.pav import PavVerifier

KINDS = ("implicit_prm", "explicit_prm", "orm")
HF_ARCHITECTURES = {"ForTokenClassification": "explicit_prm", "ForSequenceClassification": "orm"}


def verifier_kind(path, *, field: str = "path") -> str:
    """The kind of step verifier the directory ``path`` holds, from its record (module docstring)."""
    path = pathlib.Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"{field} {path}: not a directory")
    if (path / "run.json").is_file():
        return "implicit_prm"
    if (path / "reward.json").is_file():
        recorded = json.loads((path / "reward.json").read_text()).get("kind")
        if recorded not in KINDS:
            raise ValueError(f"{field} {path / 'reward.json'}: field 'kind' is {recorded!r}, expected one of {KINDS}")
        return recorded
    if (path / "config.json").is_file():
        architectures = json.loads((path / "config.json").read_text()).get("architectures") or []
        for suffix, kind in HF_ARCHITECTURES.items():
            if any(a.endswith(suffix) for a in architectures):
                return kind
        raise ValueError(f"{field} {path / 'config.json'}: field 'architectures' is {architectures}, not a "
                         "*ForTokenClassification (explicit PRM) or *ForSequenceClassification (ORM) model; an "
                         "implicit PRM needs its run directory (run.json) or train_reward directory (reward.json)")
    raise FileNotFoundError(f"{field} {path}: no run.json (PRIME run), reward.json (train_reward) or config.json "
                            "(Hugging Face model): not a step verifier directory")


def load_step_verifier(path, *, kind: str | None = None, step: int | None = None, reference: str | None = None,
                       step_delimiter: str | None = None, mesh: jax.sharding.Mesh | None = None,
                       field: str = "path") -> StepVerifier:
    """The step verifier in ``path`` (module docstring). ``step`` and ``reference`` apply to an
    implicit PRM (checkpoint of a run; reference model, default the one it was trained against);
    ``step_delimiter`` overrides the recorded one."""
    found = verifier_kind(path, field=field)
    if kind is not None and found != kind:
        raise ValueError(f"{field} {path}: holds a verifier of kind {found!r} (from its record), expected kind {kind!r}")
    if found != "implicit_prm" and (step is not None or reference is not None):
        raise ValueError(f"{field} {path}: a checkpoint step and a reference apply to an implicit PRM, not a {found}")
    path = pathlib.Path(path)
    if found == "implicit_prm":
        return _implicit(path, step=step, reference=reference, step_delimiter=step_delimiter, mesh=mesh)
    info = read_reward_model_info(path, found)
    model_dir = path / "model" if info is not None else path
    delimiter = step_delimiter or (info or {}).get("step_delimiter") or "\n"
    tokenizer = load_tokenizer(model_dir)
    load, verifier = (load_explicit_prm, ExplicitPRMVerifier) if found == "explicit_prm" else (load_orm, ORMStepVerifier)
    return verifier(load(model_dir, mesh=mesh), name=str(path), tokenizer=tokenizer, step_delimiter=delimiter,
                    delimiter_ids=delimiter_ids(tokenizer, delimiter))


def load_pav_verifier(q_path, *, prover_path=None, alpha: float = 0.5, best_of_k: int = 4,
                      mesh: jax.sharding.Mesh | None = None, field: str = "path") -> PavVerifier:
    """A PAV verifier: the Q^pi model in ``q_path`` (any logit-scored verifier; an implicit PRM is
    read cumulatively, its implicit Q) and the Best-of-K prover of ``prover_path``'s Q model
    (None: of pi itself)."""
    q, prover = (None if p is None else _as_q_model(load_step_verifier(p, mesh=mesh, field=field))
                 for p in (q_path, prover_path))
    return PavVerifier(q, prover=prover, alpha=alpha, best_of_k=best_of_k)


def _as_q_model(verifier: StepVerifier) -> StepVerifier:
    """An implicit PRM's Q reading (cumulative); other kinds unchanged."""
    return verifier.with_reading("cumulative") if isinstance(verifier, ImplicitPRMVerifier) else verifier


def _implicit(path: pathlib.Path, *, step, reference, step_delimiter, mesh) -> ImplicitPRMVerifier:
    """A PRIME run's PRM (``run.json``) or an offline implicit PRM (``reward.json``)."""
    offline = read_reward_model_info(path, "implicit_prm") if (path / "reward.json").is_file() else None
    if offline is not None:
        if step is not None:
            raise ValueError(f"{path}: an offline implicit PRM has no checkpoint steps (step={step})")
        prm, tokenizer = from_pretrained(path / "model", mesh=mesh), load_tokenizer(path / "model")
        reward, reference = offline["reward"], reference or offline["reference"]
    else:
        info = RunInfo.read(path)
        (prm, tokenizer), reward = load_role(path, "prm", step=step), info.reward
        reference = reference or info.base_model
        if mesh is not None:
            _place(prm, mesh)
    name = f"{path}@{step or 'latest'} (beta {reward.beta}, reference {reference})"
    delimiter = step_delimiter or reward.step_delimiter
    return ImplicitPRMVerifier(prm, from_pretrained(reference, mesh=mesh), reward=reward, name=name,
                               tokenizer=tokenizer, step_delimiter=delimiter,
                               delimiter_ids=delimiter_ids(tokenizer, delimiter))


def _place(model: nnx.Module, mesh: jax.sharding.Mesh) -> None:
    """Move ``model``'s weights into their ``PARAM_RULES`` shardings on ``mesh`` (in place)."""
    params = nnx.state(model, nnx.Param)
    nnx.update(model, jax.device_put(params, param_shardings(params, mesh)))
