"""Tiny random models behind every step-verifier kind, saved as the commands that make them write them."""

import jax
import numpy as np
import pytest
from flax import nnx

from prime_jax.checkpoint import Checkpointer
from prime_jax.data import encode_prompts, left_pad, load_tokenizer
from prime_jax.models import (ModelConfig, Transformer, explicit_prm_from_backbone, orm_from_backbone,
                              save_explicit_prm, save_orm, save_pretrained)
from prime_jax.rewards import ImplicitRewardConfig
from prime_jax.run_dir import RunInfo, write_reward_model_info

RESPONSES = ["1+2=3\n3*3=9\n\\boxed{9}", "4-1=3\n\\boxed{3}", "\\boxed{7}"]


@pytest.fixture(scope="session")
def models(tmp_path_factory):
    """A base model, a PRIME run whose PRM is it plus noise, an offline implicit PRM, an explicit
    PRM and an ORM (train_reward directories) and the bare HF directories of the last two."""
    root = tmp_path_factory.mktemp("step_verifiers")
    tokenizer = load_tokenizer("char")
    config = ModelConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_layers=1,
                         num_heads=2, num_kv_heads=1, head_dim=8, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id)
    base = Transformer(config, rngs=nnx.Rngs(0))
    save_pretrained(base, root / "hf", tokenizer=tokenizer)
    params = nnx.state(base, nnx.Param).to_pure_dict()
    noisy = jax.tree.map(lambda x: x + 0.05 * jax.random.normal(jax.random.key(1), x.shape), params)
    run = root / "run"
    run.mkdir()
    RunInfo(base_model=str(root / "hf"), tokenizer="char", uses_prm=True, prm_init=None,
            reward=ImplicitRewardConfig(beta=0.1)).write(run)
    checkpointer = Checkpointer(run / "checkpoints")
    checkpointer.save(1, {"policy_params": params, "prm_params": noisy}, {})
    checkpointer.close()
    prm = Transformer(config, rngs=nnx.Rngs(0))
    nnx.update(prm, _with(prm, noisy))
    save_pretrained(prm, root / "offline" / "model", tokenizer=tokenizer)
    write_reward_model_info(root / "offline", {"kind": "implicit_prm", "reference": str(root / "hf")},
                            ImplicitRewardConfig(beta=0.2, step_delimiter="\n"))
    explicit = explicit_prm_from_backbone(base)
    explicit.score[...] = jax.random.normal(jax.random.key(3), explicit.score.shape)
    save_explicit_prm(explicit, root / "explicit" / "model", tokenizer=tokenizer)
    write_reward_model_info(root / "explicit", {"kind": "explicit_prm", "step_delimiter": "\n"}, None)
    orm = orm_from_backbone(base)
    orm.score[...] = jax.random.normal(jax.random.key(2), orm.score.shape)
    save_orm(orm, root / "orm" / "model", tokenizer=tokenizer)
    write_reward_model_info(root / "orm", {"kind": "orm"}, None)
    return {"root": root, "tokenizer": tokenizer, "base": base, "prm": prm, "explicit": explicit, "orm": orm,
            "run": run, "offline": root / "offline", "explicit_dir": root / "explicit", "orm_dir": root / "orm",
            "hf": root / "hf"}


def _with(module, pure):
    state = nnx.state(module, nnx.Param)
    state.replace_by_pure_dict(pure)
    return state


@pytest.fixture(scope="session")
def rows(models):
    """``[prompt | response]`` rows of three responses (left-padded prompts, right-padded
    responses ending in EOS): tokens_bs, attention_mask_bs, response_mask_bl."""
    tokenizer = models["tokenizer"]
    prompts = encode_prompts(tokenizer, [(("user", "1+2"),), (("user", "4-1 please"),), (("user", "7"),)])
    width_p = max(map(len, prompts))
    ids_bp, mask_bp = left_pad(prompts, width_p, tokenizer.pad_token_id)
    responses = [tokenizer.encode(r, add_special_tokens=False) + [tokenizer.eos_token_id] for r in RESPONSES]
    width_l = max(map(len, responses)) + 2
    ids_bl = np.full((len(responses), width_l), tokenizer.pad_token_id, np.int32)
    mask_bl = np.zeros((len(responses), width_l), np.int32)
    for b, r in enumerate(responses):
        ids_bl[b, :len(r)], mask_bl[b, :len(r)] = r, 1
    return np.concatenate([ids_bp, ids_bl], 1), np.concatenate([mask_bp, mask_bl], 1), mask_bl
