"""Which problems a run trains and evaluates on, and the tokenizer that reads them.

Sources: the synthetic tasks (``arithmetic``, ``countdown``), Eurus-2-RL rows in a parquet/jsonl
file (``eurus``) and any registered seqio Task or Mixture (``seqio``, read by
`prime_jax.data.seqio_source`, which alone imports seqio/TensorFlow, and only when named).
"""

from __future__ import annotations

import dataclasses

from prime_jax import data
from prime_jax.config_checks import check_choice, check_fields_at_least

TASK_NAMES = ("arithmetic", "countdown", "eurus", "seqio")


@dataclasses.dataclass(frozen=True, kw_only=True)
class TaskConfig:
    """A synthetic task (``arithmetic``, ``countdown``), Eurus-2-RL rows (``eurus``) or a seqio
    Task or Mixture (``seqio``).

    Synthetic problems are generated from ``seed``; the eval split is disjoint
    from train by construction; ``synthetic`` sets their difficulty (an ``ArithmeticConfig`` or
    ``CountdownConfig``; None: the task's defaults, SPEC section 6). ``eurus`` reads ``path``
    (parquet/jsonl) and ``eval_path``. ``seqio`` trains on split ``seqio_train_split`` of the
    registered Task or Mixture ``seqio_task`` and evaluates on ``seqio_eval_split`` (None: no
    held-out evaluation), after importing ``seqio_modules`` (the modules that register it); see
    `prime_jax.data.seqio_source` for the record fields. ``tokenizer`` is ``"char"`` (shipped) or
    a local HF directory.
    """

    name: str = "arithmetic"
    seed: int = 0
    num_train: int = 20000
    num_eval: int = 256
    num_sft: int = 20000
    path: str | None = None
    eval_path: str | None = None
    tokenizer: str = "char"
    max_prompt_length: int = 64
    synthetic: data.ArithmeticConfig | data.CountdownConfig | None = None
    seqio_task: str | None = None
    seqio_train_split: str = "train"
    seqio_eval_split: str | None = None
    seqio_modules: tuple[str, ...] = ()

    def __post_init__(self):
        check_choice("TaskConfig", "name", self.name, TASK_NAMES)
        check_fields_at_least(self, {"num_train": 1, "num_eval": 0, "num_sft": 0, "max_prompt_length": 1})
        if (self.name == "seqio") != bool(self.seqio_task):
            raise ValueError(f"TaskConfig.seqio_task={self.seqio_task!r} with name={self.name!r}: name 'seqio' "
                             "and seqio_task (a registered seqio Task or Mixture) go together")
        if self.name != "seqio" and (self.seqio_eval_split or self.seqio_modules):
            raise ValueError(f"TaskConfig.seqio_eval_split / seqio_modules are set, but name={self.name!r} "
                             "is not 'seqio'")
        expected = {"arithmetic": data.ArithmeticConfig, "countdown": data.CountdownConfig}.get(self.name)
        if self.synthetic is not None and not isinstance(self.synthetic, expected or ()):
            raise ValueError(f"TaskConfig.synthetic={self.synthetic!r} does not configure task {self.name!r}"
                             + (f": expected a {expected.__name__}" if expected else " (not a synthetic task)"))


@dataclasses.dataclass(frozen=True)
class TaskData:
    train_prompts: list
    eval_prompts: list
    sft_examples: list
    tokenizer: object
    stats: dict


def task_config_from_dict(fields: dict) -> TaskConfig:
    """The ``TaskConfig`` that ``dataclasses.asdict`` turned into ``fields`` (e.g. a run's
    ``run.json``, lists for tuples): ``synthetic`` becomes the ``ArithmeticConfig`` / ``CountdownConfig``
    of its task."""
    fields = {k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()}
    synthetic = fields.get("synthetic")
    if synthetic is not None:
        kind = {"arithmetic": data.ArithmeticConfig, "countdown": data.CountdownConfig}.get(fields.get("name"))
        if kind is None:
            raise ValueError(f"task {fields.get('name')!r} has synthetic settings {synthetic}, but only arithmetic "
                             "and countdown are synthetic tasks")
        synthetic = kind(**{k: tuple(v) if isinstance(v, list) else v for k, v in synthetic.items()})
    return TaskConfig(**{**fields, "synthetic": synthetic})


def load_task(config: TaskConfig) -> TaskData:
    """Records for RL, held-out evaluation and SFT, plus the tokenizer."""
    tokenizer = data.load_tokenizer(config.tokenizer)
    if config.name in ("arithmetic", "countdown"):
        make = data.make_synthetic_rl_prompts
        return TaskData(
            train_prompts=make(config.name, config.seed, config.num_train, "train", config.synthetic),
            eval_prompts=make(config.name, config.seed, config.num_eval, "eval", config.synthetic),
            sft_examples=data.make_synthetic_sft_examples(config.name, config.seed + 1, config.num_sft,
                                                          config=config.synthetic),
            tokenizer=tokenizer, stats={})
    if config.name == "eurus":
        if not config.path:
            raise ValueError("TaskConfig(name='eurus') needs path= a parquet/jsonl file or folder")
        stats = data.DataStats()
        train = data.load_eurus_records(config.path, stats=stats)
        evaluation = data.load_eurus_records(config.eval_path, stats=stats) if config.eval_path else []
        return TaskData(train, evaluation, [], tokenizer, stats.as_dict())
    return _load_seqio(config, tokenizer)


def _load_seqio(config: TaskConfig, tokenizer) -> TaskData:
    """The records of the named seqio Task or Mixture (imports seqio/TensorFlow on first use)."""
    from prime_jax.data.seqio_source import seqio_records

    stats = data.DataStats()
    read = dict(modules=config.seqio_modules, stats=stats)
    train = seqio_records(config.seqio_task, config.seqio_train_split, **read)
    if not train:
        raise ValueError(f"TaskConfig.seqio_task={config.seqio_task!r}: split {config.seqio_train_split!r} has no "
                         f"valid record ({stats.as_dict()})")
    evaluation = seqio_records(config.seqio_task, config.seqio_eval_split, **read,
                               split_field="TaskConfig.seqio_eval_split") if config.seqio_eval_split else []
    return TaskData(train, evaluation, [], tokenizer, stats.as_dict())
