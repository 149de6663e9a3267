"""Data: synthetic tasks, the char tokenizer, Eurus-2-RL loading, seqio tasks, numpy pipelines.

Importing `prime_jax.data` does NOT import seqio or TensorFlow; the seqio-facing names
(`register_eurus_task`, `register_synthetic_task`, `get_task_stats`, `records_from_task`,
`synthetic_task_name`, `seqio_records`, `HFVocabulary`) are loaded on first access.
"""

from prime_jax.data.char_tokenizer import (
    BOS_ID,
    BOXED_ID,
    EOS_ID,
    PAD_ID,
    build_char_tokenizer,
    load_tokenizer,
)
from prime_jax.data.chat import encode_prompts, encode_responses, render_prompt
from prime_jax.data.eurus import MATH_SUFFIX, load_eurus_records, parse_eurus_row
from prime_jax.data.pipeline import PromptBatch, PromptPipeline, left_pad
from prime_jax.data.records import DataStats, MalformedRow, PromptRecord, SFTExample
from prime_jax.data.sampler import EpochSampler
from prime_jax.data.sft import SFTBatch, SFTBatcher
from prime_jax.data.synthetic import (
    OUTCOME_SCORERS,
    ArithmeticConfig,
    CountdownConfig,
    countdown_reward,
    is_correct_countdown,
    label_arithmetic_steps,
    label_countdown_steps,
    make_synthetic_rl_prompts,
    make_synthetic_sft_examples,
)

_LAZY = {
    "register_eurus_task": "prime_jax.data.tasks",
    "register_synthetic_task": "prime_jax.data.tasks",
    "get_task_stats": "prime_jax.data.tasks",
    "records_from_task": "prime_jax.data.tasks",
    "synthetic_task_name": "prime_jax.data.tasks",
    "seqio_records": "prime_jax.data.seqio_source",
    "HFVocabulary": "prime_jax.data.vocabulary",
}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'prime_jax.data' has no attribute {name!r}")


__all__ = [
    "ArithmeticConfig", "BOS_ID", "BOXED_ID", "CountdownConfig", "DataStats", "EOS_ID",
    "EpochSampler", "MATH_SUFFIX", "MalformedRow", "PAD_ID", "PromptBatch", "PromptPipeline", "PromptRecord",
    "SFTBatch", "SFTBatcher", "SFTExample", "OUTCOME_SCORERS", "build_char_tokenizer", "countdown_reward",
    "encode_prompts", "encode_responses", "is_correct_countdown", "label_arithmetic_steps",
    "label_countdown_steps", "left_pad", "load_eurus_records", "load_tokenizer",
    "make_synthetic_rl_prompts", "make_synthetic_sft_examples", "parse_eurus_row",
    "render_prompt",
]  # the lazy seqio-facing names are left out so `import *` never pulls in TensorFlow
