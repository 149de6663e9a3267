"""Each kind's scores against its equation, computed here from the model's own outputs in numpy."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from prime_jax.data.steps import delimiter_ids
from prime_jax.models import token_logprobs
from prime_jax import sharding
from prime_jax.pav import provers
from prime_jax.rewards import ImplicitRewardConfig, step_ends_from_tokens
from prime_jax.step_verifiers import (ExplicitPRMVerifier, ImplicitPRMVerifier, ORMStepVerifier, PavVerifier,
                                      load_step_verifier)


def _verifier(cls, model, tokenizer, **kwargs):
    return cls(model, name="test", tokenizer=tokenizer, step_delimiter="\n", delimiter_ids=delimiter_ids(tokenizer),
               **kwargs)


def _ends(rows, tokenizer):
    tokens_bs, _, mask_bl = rows
    return np.asarray(step_ends_from_tokens(tokens_bs[:, -mask_bl.shape[1]:], mask_bl, delimiter_ids(tokenizer)))


def test_explicit_prm_scores_are_its_logits_at_the_step_ends(models, rows):
    tokens_bs, attn_bs, mask_bl = rows
    verifier = _verifier(ExplicitPRMVerifier, models["explicit"], models["tokenizer"])
    out = verifier.score_steps(*rows)
    z_bs = np.asarray(models["explicit"](jnp.asarray(tokens_bs), jnp.asarray(attn_bs)))
    ends_bl = _ends(rows, models["tokenizer"])
    np.testing.assert_array_equal(np.asarray(out.step_end_bl), ends_bl)
    assert np.asarray(out.step_end_bl).sum(1).tolist() == [3, 2, 1]
    np.testing.assert_allclose(np.asarray(out.scores_bl), np.where(ends_bl, z_bs[:, -mask_bl.shape[1]:], 0), rtol=1e-5,
                               atol=1e-6)
    last_prompt = tokens_bs.shape[1] - mask_bl.shape[1] - 1
    np.testing.assert_allclose(np.asarray(out.prompt_score_b), z_bs[:, last_prompt], rtol=1e-5, atol=1e-6)
    assert verifier.threshold == 0.5 and verifier.logit_scores
    np.testing.assert_allclose(np.asarray(verifier.step_probabilities(out.scores_bl)),
                               1 / (1 + np.exp(-np.asarray(out.scores_bl))), rtol=1e-6)


def test_given_step_ends_replace_the_delimiters(models, rows):
    _, _, mask_bl = rows
    verifier = _verifier(ExplicitPRMVerifier, models["explicit"], models["tokenizer"])
    given = np.zeros(mask_bl.shape, bool)
    given[:, 1] = True
    given[0, mask_bl.shape[1] - 1] = True  # outside row 0's response mask: dropped
    out = verifier.score_steps(*rows, step_end_bl=given)
    np.testing.assert_array_equal(np.asarray(out.step_end_bl), given & mask_bl.astype(bool))


def test_orm_scores_are_its_head_read_at_the_step_ends(models, rows):
    tokens_bs, attn_bs, mask_bl = rows
    verifier = _verifier(ORMStepVerifier, models["orm"], models["tokenizer"])
    out = verifier.score_steps(*rows)
    r_bs = np.asarray(models["orm"].position_scores(jnp.asarray(tokens_bs), jnp.asarray(attn_bs)))
    ends_bl = _ends(rows, models["tokenizer"])
    np.testing.assert_allclose(np.asarray(out.scores_bl), np.where(ends_bl, r_bs[:, -mask_bl.shape[1]:], 0),
                               rtol=1e-5, atol=1e-6)
    last_b = mask_bl.sum(1) - 1  # the last step's score is the ORM's outcome score
    outcome_b = np.asarray(models["orm"](jnp.asarray(tokens_bs), jnp.asarray(attn_bs)))
    np.testing.assert_allclose(np.asarray(out.scores_bl)[np.arange(3), last_b], outcome_b, rtol=1e-5)


@pytest.mark.parametrize("reading", ["step", "cumulative"])
def test_implicit_prm_scores_are_beta_times_log_ratio_sums(models, rows, reading):
    tokens_bs, attn_bs, mask_bl = rows
    reward = ImplicitRewardConfig(beta=0.3)
    verifier = ImplicitPRMVerifier(models["prm"], models["base"], reward=reward, name="test",
                                   tokenizer=models["tokenizer"], delimiter_ids=delimiter_ids(models["tokenizer"]),
                                   reading=reading)
    out = verifier.score_steps(*rows)
    length = mask_bl.shape[1]
    q_bl = (np.asarray(token_logprobs(models["prm"], jnp.asarray(tokens_bs), jnp.asarray(attn_bs), last=length), np.float64)
            - np.asarray(token_logprobs(models["base"], jnp.asarray(tokens_bs), jnp.asarray(attn_bs), last=length))) * mask_bl
    ends_bl = _ends(rows, models["tokenizer"])
    expected = np.zeros(mask_bl.shape)
    for b in range(3):
        start = 0
        for end in np.flatnonzero(ends_bl[b]):
            expected[b, end] = 0.3 * q_bl[b, (start if reading == "step" else 0):end + 1].sum()
            start = end + 1
    assert np.abs(expected).max() > 1e-3  # the PRM differs from its reference
    np.testing.assert_allclose(np.asarray(out.scores_bl), expected, atol=2e-6)
    assert verifier.threshold is None and not np.asarray(out.prompt_score_b).any()
    assert verifier.with_reading("step").reading == "step" and verifier.step_delimiter == reward.step_delimiter


@pytest.mark.parametrize("separate_prover", [False, True])
def test_pav_is_q_plus_alpha_times_the_best_of_k_advantage(models, rows, separate_prover):
    tokenizer = models["tokenizer"]
    q = _verifier(ExplicitPRMVerifier, models["explicit"], tokenizer)
    prover = _verifier(ORMStepVerifier, models["orm"], tokenizer) if separate_prover else None
    verifier = PavVerifier(q, prover=prover, alpha=2.0, best_of_k=3)
    out = verifier.score_steps(*rows)
    q_out, base_out = q.score_steps(*rows), (prover or q).score_steps(*rows)
    sig = lambda x: 1 / (1 + np.exp(-np.asarray(x, np.float64)))  # noqa: E731
    ends_bl = np.asarray(q_out.step_end_bl)
    for b in range(3):
        steps = np.flatnonzero(ends_bl[b])
        q_pi_h = sig(np.asarray(q_out.scores_bl)[b, steps])
        q_mu_h = np.asarray(provers.best_of_k_q(sig(np.asarray(base_out.scores_bl)[b, steps]), 3))
        v0 = float(provers.best_of_k_q(sig(np.asarray(base_out.prompt_score_b)[b]), 3))
        adv_h = np.asarray(provers.process_advantages(q_mu_h[None], np.array([v0]), np.ones((1, len(steps)))))[0]
        np.testing.assert_allclose(np.asarray(out.scores_bl)[b, steps], q_pi_h + 2.0 * adv_h, rtol=1e-5, atol=1e-6)
    assert not np.asarray(out.scores_bl)[~ends_bl].any()
    with pytest.raises(TypeError, match="not logits"):
        verifier.step_probabilities(out.scores_bl)
    with pytest.raises(ValueError, match="PavVerifier.q=.*logits"):
        PavVerifier(verifier)


def test_score_steps_runs_inside_jit_and_on_a_mesh(models, rows):
    """The RL step's use: the loader places the weights on the mesh (FSDP-sharded), the rows are
    spread over the data axes, and score_steps is called under an outer jit."""
    expected = np.asarray(load_step_verifier(models["explicit_dir"]).score_steps(*rows).scores_bl)
    mesh = sharding.make_mesh(sharding.MeshConfig(data=2, fsdp=2), jax.devices()[:4])
    verifier = load_step_verifier(models["explicit_dir"], mesh=mesh)
    embed = verifier.params["backbone"]["embed"].get_value()
    assert embed.sharding.mesh == mesh and not embed.sharding.is_fully_replicated
    rows4 = sharding.place(tuple(np.concatenate([x, x[:1]]) for x in rows), mesh)
    with jax.set_mesh(mesh):
        out = jax.jit(lambda *r: verifier.score_steps(*r).scores_bl * 2.0)(*rows4)
    np.testing.assert_allclose(np.asarray(sharding.fetch(out, mesh))[:3], 2.0 * expected, rtol=1e-5, atol=1e-5)


def test_a_verifier_refuses_an_empty_delimiter_and_a_bad_threshold(models):
    with pytest.raises(ValueError, match=r"delimiter_ids=\(\): must not be empty"):
        ExplicitPRMVerifier(models["explicit"], name="x", tokenizer=models["tokenizer"], step_delimiter="\n",
                            delimiter_ids=())
    with pytest.raises(ValueError, match="threshold=1.5"):
        _verifier(ExplicitPRMVerifier, models["explicit"], models["tokenizer"], threshold=1.5)
