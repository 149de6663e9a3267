"""Tiny random models behind every step-verifier kind, saved as the commands that make them write them."""

import numpy as np
import pytest
from flax import nnx

from prime_jax.data import encode_prompts, left_pad, load_tokenizer
from prime_jax.models import Transformer, save_pretrained
from prime_jax.rewards import ImplicitRewardConfig
from prime_jax.run_dir import write_reward_model_info
from verifier_dirs import noisy_params, save_base, write_explicit_prm, write_orm, write_prime_run

RESPONSES = ["1+2=3\n3*3=9\n\\boxed{9}", "4-1=3\n\\boxed{3}", "\\boxed{7}"]


@pytest.fixture(scope="session")
def models(tmp_path_factory):
    """A base model, a PRIME run whose PRM is it plus noise, an offline implicit PRM, an explicit
    PRM and an ORM (train_reward directories) and the bare HF directories of the last two."""
    root = tmp_path_factory.mktemp("step_verifiers")
    tokenizer = load_tokenizer("char")
    base = save_base(root / "hf", tokenizer)
    run = write_prime_run(root / "run", root / "hf", base, beta=0.1)
    prm = Transformer(base.config, rngs=nnx.Rngs(0))
    params = nnx.state(prm, nnx.Param)
    params.replace_by_pure_dict(noisy_params(base))
    nnx.update(prm, params)
    save_pretrained(prm, root / "offline" / "model", tokenizer=tokenizer)
    write_reward_model_info(root / "offline", {"kind": "implicit_prm", "reference": str(root / "hf")},
                            ImplicitRewardConfig(beta=0.2, step_delimiter="\n"))
    explicit = write_explicit_prm(root / "explicit", base, tokenizer)
    orm = write_orm(root / "orm", base, tokenizer)
    return {"root": root, "tokenizer": tokenizer, "base": base, "prm": prm, "explicit": explicit, "orm": orm,
            "run": run, "offline": root / "offline", "explicit_dir": root / "explicit", "orm_dir": root / "orm",
            "hf": root / "hf"}


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
