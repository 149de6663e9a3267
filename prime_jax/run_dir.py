"""What a run directory holds, written and read back in one place.

A PRIME run (``python -m prime_jax.train --workdir W``)::

    W/run.json              RunInfo: base model (= the reference), tokenizer, PRM use, the
                            implicit reward config the PRM was trained with, the task config
    W/sft_model/            the SFT warm-up's (or a fresh init's) Hugging Face directory
    W/checkpoints/<step>/   orbax checkpoints (prime_jax.checkpoint)
    W/metrics.jsonl, W/curves.png, W/config.gin, W/operative_config.gin, TensorBoard events

An offline reward model (``python -m prime_jax.train_reward --workdir W``)::

    W/reward.json           kind ("implicit_prm" | "orm" | "explicit_prm"), reference, implicit reward
                            config (implicit PRM only), metrics
    W/model/                its Hugging Face directory
"""

from __future__ import annotations

import dataclasses
import json
import pathlib

from flax import nnx

from prime_jax.checkpoint import Checkpointer
from prime_jax.data import load_tokenizer
from prime_jax.models import from_pretrained
from prime_jax.rewards import ImplicitRewardConfig

ROLES = ("policy", "prm")
REWARD_KINDS = ("implicit_prm", "orm", "explicit_prm")


def checkpoint_dir(workdir) -> pathlib.Path:
    return pathlib.Path(workdir) / "checkpoints"


def sft_model_dir(workdir) -> pathlib.Path:
    return pathlib.Path(workdir) / "sft_model"


@dataclasses.dataclass(frozen=True, kw_only=True)
class RunInfo:
    """``run.json``: what a later command needs to rebuild a run's models and read its PRM."""

    base_model: str
    tokenizer: str
    uses_prm: bool
    prm_init: str | None
    reward: ImplicitRewardConfig
    task: dict | None = None  # asdict(TaskConfig), read by data.task_config.task_config_from_dict; None: older run

    def write(self, workdir) -> None:
        (pathlib.Path(workdir) / "run.json").write_text(json.dumps(dataclasses.asdict(self), indent=1))

    @classmethod
    def read(cls, workdir) -> "RunInfo":
        path = pathlib.Path(workdir) / "run.json"
        if not path.exists():
            raise FileNotFoundError(f"{path} not found: is {workdir} a prime_jax run directory?")
        fields = json.loads(path.read_text())
        if "reward" not in fields:
            raise ValueError(f"{path} has no 'reward' field (written by an older prime_jax): the implicit "
                             "reward config the PRM was trained with is unknown")
        return cls(**{**fields, "reward": ImplicitRewardConfig(**fields["reward"])})


def write_reward_model_info(workdir, info: dict, reward: ImplicitRewardConfig | None) -> None:
    """``reward.json`` of an offline reward model; ``reward`` is None for an ORM or an explicit PRM."""
    record = {**info, "reward": None if reward is None else dataclasses.asdict(reward)}
    (pathlib.Path(workdir) / "reward.json").write_text(json.dumps(record, indent=1))


def read_reward_model_info(path, kind: str) -> dict | None:
    """``reward.json`` of the offline reward-model directory ``path`` (its ``reward`` as an
    ``ImplicitRewardConfig``); None if ``path`` is not one; an error if it holds another kind."""
    info_path = pathlib.Path(path) / "reward.json"
    if not info_path.exists():
        return None
    info = json.loads(info_path.read_text())
    if info.get("kind") != kind:
        raise ValueError(f"{info_path}: kind is {info.get('kind')!r}, expected {kind!r} here")
    if kind == "implicit_prm":
        if not isinstance(info.get("reward"), dict):
            raise ValueError(f"{info_path} has no 'reward' config (written by an older prime_jax)")
        info["reward"] = ImplicitRewardConfig(**info["reward"])
    return info


def load_role(workdir, role: str = "policy", *, step: int | None = None):
    """The ``role`` ("policy" or "prm") of a run at ``step`` (default: latest) as a ``Transformer``,
    plus the run's tokenizer: structure from the run's base model, weights from the verified
    checkpoint."""
    if role not in ROLES:
        raise ValueError(f"role {role!r}: expected one of {ROLES}")
    info = RunInfo.read(workdir)
    if role == "prm" and not info.uses_prm:
        raise ValueError(f"run {workdir} has no PRM (process_coef = 0); use role='policy'")
    with Checkpointer(checkpoint_dir(workdir)) as checkpointer:
        state, _ = checkpointer.restore_raw(step)
    model = from_pretrained(info.base_model)
    params = nnx.state(model, nnx.Param)
    nnx.replace_by_pure_dict(params, _unwrap_values(state[f"{role}_params"]))
    nnx.update(model, params)
    return model, load_tokenizer(info.tokenizer)


def _unwrap_values(tree):
    """A raw restore keeps each variable as ``{"value": array}``; NNX's pure dicts hold the array."""
    if isinstance(tree, dict):
        if set(tree) == {"value"}:
            return tree["value"]
        return {key: _unwrap_values(value) for key, value in tree.items()}
    return tree
