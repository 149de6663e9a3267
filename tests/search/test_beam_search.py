"""Step-level beam search (prime_jax.search) and step verifiers as its scorers: a hand-built tree
with a known best path that greedy step selection misses, exact token accounting, B = C = 1 as
plain step-by-step sampling on a tiny Transformer, and the PAV effective reward on a hand-built tree."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from prime_jax.models import ModelConfig, Transformer, token_logprobs
from prime_jax.rewards import ImplicitRewardConfig
from prime_jax.rollout import Rollouts, SamplingConfig, sample
from prime_jax.search.beam_search import BeamSearchConfig, append_steps, beam_search, top_slots
from prime_jax.search.candidates import StepCandidates
from prime_jax.search.scorers import final_scorer, verifier_step_scorer
from prime_jax.step_verifiers import ImplicitPRMVerifier, PavVerifier, StepScores, StepVerifier
from prime_jax.step_verifiers.base import response_step_ends

PAD, EOS, DELIM, FILL = 0, 2, 3, 7
ACTIONS = (4, 5, 6)


def toy_proposer(depth: int):
    """Proposal c of every prefix: ``FILL * c, ACTIONS[c]`` then the delimiter (EOS at step
    ``depth``): c + 2 tokens, so all of ACTIONS^depth is reachable and lengths differ per c."""

    def propose(tokens_mw, mask_mw, key, num_samples):
        rows = []
        for prefix, m in zip(tokens_mw, mask_mw):
            done = sum(int(t) in ACTIONS for t in prefix[m > 0])
            for c in range(num_samples):
                rows.append([FILL] * c + [ACTIONS[c], EOS if done + 1 == depth else DELIM])
        width = max(len(r) for r in rows)
        tokens = np.array([r + [PAD] * (width - len(r)) for r in rows], np.int32)
        lengths = np.array([len(r) for r in rows], np.int32)
        mask = (np.arange(width)[None, :] < lengths[:, None]).astype(np.int32)
        return Rollouts(tokens=tokens, logprobs=np.zeros(tokens.shape, np.float32), mask=mask,
                        truncated=np.zeros(len(rows), bool), lengths=lengths)

    return propose


def path_of(tokens, mask):
    return tuple(int(t) for t in tokens[mask > 0] if int(t) in ACTIONS)


# Myopic step scores: the first step 4 looks best but leads nowhere; the best path is 5, 6, 4.
STEP_TABLE = {(4,): 0.9, (5,): 0.6, (6,): 0.1, (5, 6): 1.0, (5, 4): 0.2, (5, 5): 0.2, (5, 6, 4): 1.0,
              (5, 6, 5): 0.3, (5, 6, 6): 0.3}
TARGET = (5, 6, 4)


def table_scorer(c: StepCandidates):
    return np.array([STEP_TABLE.get(path_of(t, m * r), 0.0)
                     for t, m, r in zip(c.tokens_nw, c.mask_nw, c.response_mask_nw)])


def target_final(tokens_nw, mask_nw, response_mask_nw):
    return np.array([float(path_of(t, r) == TARGET) for t, r in zip(tokens_nw, response_mask_nw)])


def run_toy(beam_width, proposals, prompts=1, **overrides):
    kwargs = dict(beam_width=beam_width, proposals=proposals, max_steps=6, max_step_tokens=8,
                  max_response_tokens=16, eos_id=EOS, step_stop_ids=(DELIM,), pad_id=PAD) | overrides
    config = BeamSearchConfig(**kwargs)
    prompt = np.tile(np.array([[PAD, 1, 9]], np.int32), (prompts, 1))
    return beam_search(None, prompt, (prompt != PAD).astype(np.int32), key=jax.random.key(0),
                       step_scorer=table_scorer, final_scorer=target_final, config=config,
                       proposer=toy_proposer(depth=3))


def test_beam_search_finds_the_known_best_path_that_greedy_misses():
    result = run_toy(beam_width=2, proposals=3, prompts=2)
    for p in range(2):
        assert path_of(result.response_pl[p], result.response_mask_pl[p]) == TARGET
    assert result.finished_pb.all() and result.valid_pb.all() and result.rounds == 3
    # the pool: the two best third steps after 5, 6 (ties broken to the lower index: 6, 4 vs 6, 5)
    pool = {path_of(t, m) for t, m in zip(result.beams_pbl[0], result.beams_mask_pbl[0])}
    assert pool == {(5, 6, 4), (5, 6, 5)}
    greedy = run_toy(beam_width=1, proposals=3)
    assert path_of(greedy.response_pl[0], greedy.response_mask_pl[0]) == (4, 4, 4)
    best_of_one = run_toy(beam_width=1, proposals=1)
    assert path_of(best_of_one.response_pl[0], best_of_one.response_mask_pl[0]) == (4, 4, 4)


def test_sampled_tokens_count_every_proposal_of_live_beams():
    # each live beam proposes c + 2 tokens for c = 0, 1, 2: 9 tokens a round
    assert run_toy(beam_width=2, proposals=3, prompts=2).sampled_tokens_p.tolist() == [3 * 2 * 9] * 2
    assert run_toy(beam_width=1, proposals=3).sampled_tokens_p.tolist() == [3 * 9]
    assert run_toy(beam_width=1, proposals=1).sampled_tokens_p.tolist() == [3 * 2]
    # a budget of 3 response tokens: the second 2-token step is cut to 1 token and the beam finishes
    cut = run_toy(beam_width=1, proposals=1, max_response_tokens=3)
    assert cut.response_mask_pl.sum() == 3 and cut.finished_pb[0, 0] and cut.rounds == 2
    assert cut.sampled_tokens_p.tolist() == [4]  # the cut step's tokens were still sampled


def test_max_steps_keeps_unfinished_beams_for_the_final_pick():
    result = run_toy(beam_width=2, proposals=3, max_steps=2)
    assert not result.finished_pb.any() and result.valid_pb.all()
    assert path_of(result.response_pl[0], result.response_mask_pl[0]) in {(5, 6), (5, 4)}


def test_without_dedupe_duplicate_first_steps_fill_the_beam():
    # the start state fills both beams: without dedupe both keep the same myopic first step 4
    result = run_toy(beam_width=2, proposals=3, dedupe=False)
    assert path_of(result.response_pl[0], result.response_mask_pl[0]) != TARGET


def test_top_slots_ties_go_to_the_lower_index_and_nan_ranks_last():
    scores = np.array([[0.5, 0.7, 0.7, np.nan, 0.1]])
    allowed = np.array([[True, True, True, True, False]])
    np.testing.assert_array_equal(top_slots(scores, allowed, np.array([2])), [[False, True, True, False, False]])
    np.testing.assert_array_equal(top_slots(scores, allowed, np.array([4])), [[True, True, True, True, False]])


def test_append_steps_right_aligns_prefix_and_step():
    tokens = np.array([[0, 0, 5, 6], [0, 7, 8, 9]])
    step = np.array([[1, 2, 0], [3, 0, 0]])
    out, mask = append_steps(tokens, (tokens > 0).astype(np.int32), step, (step > 0).astype(np.int32), 0)
    np.testing.assert_array_equal(out, [[5, 6, 1, 2], [7, 8, 9, 3]])
    np.testing.assert_array_equal(mask, np.ones((2, 4)))
    with pytest.raises(ValueError, match="outgrew"):
        append_steps(tokens, (tokens > 0).astype(np.int32), np.ones((2, 3), np.int32), np.ones((2, 3), np.int32), 0)


@pytest.fixture(scope="module")
def tiny_policy():
    config = ModelConfig(vocab_size=12, hidden_size=32, intermediate_size=64, num_layers=1, num_heads=2,
                         num_kv_heads=1, head_dim=16, max_position_embeddings=128)
    return Transformer(config, rngs=nnx.Rngs(0))


PROMPTS = np.array([[0, 0, 1, 5], [0, 1, 6, 7], [1, 4, 9, 10]], np.int32)


def constant_step(c):
    return np.zeros(len(c.tokens_nw))


def constant_final(tokens_nw, mask_nw, response_mask_nw):
    return np.zeros(len(tokens_nw))


def beam_config(**overrides):
    return BeamSearchConfig(**(dict(beam_width=1, proposals=1, max_steps=40, max_step_tokens=6,
                                    max_response_tokens=40, eos_id=EOS, step_stop_ids=(DELIM,)) | overrides))


def test_one_beam_one_proposal_is_step_by_step_sampling(tiny_policy):
    config = beam_config()
    key = jax.random.key(3)
    result = beam_search(tiny_policy, PROMPTS, (PROMPTS > 0).astype(np.int32), key=key, step_scorer=constant_step,
                         final_scorer=constant_final, config=config)
    # reference: a plain loop over rounds on unpadded-as-possible prefixes, same key per round
    prefixes = [list(row[row > 0]) for row in PROMPTS]
    done = [False] * len(prefixes)
    step_cfg = config.sampling()
    for r in range(result.rounds):
        width = max(map(len, prefixes))
        ids = np.array([[0] * (width - len(x)) + x for x in prefixes], np.int32)
        out = sample(tiny_policy, ids, (np.arange(width)[None] >= width - np.array(list(map(len, prefixes)))[:, None])
                     .astype(np.int32), key=jax.random.fold_in(key, r), config=step_cfg)
        for i, (toks, m) in enumerate(zip(np.asarray(out.tokens), np.asarray(out.mask))):
            if not done[i]:
                prefixes[i] = prefixes[i] + list(toks[m > 0])
                done[i] = EOS in toks[m > 0]
    assert all(done) and result.finished_pb[:, 0].all()
    for p, row in enumerate(PROMPTS):
        expected = prefixes[p][int((row > 0).sum()):]
        got = result.response_pl[p][result.response_mask_pl[p] > 0].tolist()
        assert got == expected
        assert result.sampled_tokens_p[p] == len(expected)  # every proposal was kept


def test_greedy_one_beam_matches_greedy_decoding(tiny_policy):
    config = beam_config(temperature=0.0, max_response_tokens=20, max_steps=20)
    result = beam_search(tiny_policy, PROMPTS, (PROMPTS > 0).astype(np.int32), key=jax.random.key(0),
                         step_scorer=constant_step, final_scorer=constant_final, config=config)
    full = sample(tiny_policy, PROMPTS, (PROMPTS > 0).astype(np.int32), key=jax.random.key(0),
                  config=SamplingConfig(max_new_tokens=20, temperature=0.0, eos_id=EOS, decode_segments=1))
    np.testing.assert_array_equal(result.response_mask_pl, np.asarray(full.mask))
    np.testing.assert_array_equal(np.where(result.response_mask_pl > 0, result.response_pl, 0),
                                  np.where(np.asarray(full.mask) > 0, np.asarray(full.tokens), 0))


class TableQ(StepVerifier):
    """A hand-built Q model: ``Q^pi`` of a prefix looked up by the actions its response took
    (scores are logits, read on the host through a callback)."""

    kind = "table_q"
    logit_scores = True

    def __init__(self, q_pi: dict):
        self.q_pi = q_pi
        super().__init__(name="table", tokenizer=None, step_delimiter="|", delimiter_ids=(DELIM,), threshold=None)

    def weights(self):
        return ()

    def _score(self, weights, tokens_bs, attention_mask_bs, response_mask_bl, step_end_bl):
        ends_bl = response_step_ends(tokens_bs, response_mask_bl, self.delimiter_ids, step_end_bl)
        logit = lambda q: np.log(np.clip(q, 1e-9, 1 - 1e-9) / np.clip(1 - q, 1e-9, 1))  # noqa: E731

        def host(tokens_bs, response_bl, ends_bl):
            tokens_bl = np.asarray(tokens_bs)[:, -response_bl.shape[1]:]
            scores_bl = np.zeros(response_bl.shape, np.float32)
            for b, t in zip(*np.nonzero(np.asarray(ends_bl))):
                path = tuple(int(x) for x, m in zip(tokens_bl[b, :t + 1], response_bl[b, :t + 1]) if m and int(x) in ACTIONS)
                scores_bl[b, t] = logit(self.q_pi[path])
            return scores_bl, np.full(len(scores_bl), logit(self.q_pi[()]), np.float32)

        b, length = response_mask_bl.shape
        scores_bl, prompt_b = jax.pure_callback(
            host, (jax.ShapeDtypeStruct((b, length), jnp.float32), jax.ShapeDtypeStruct((b,), jnp.float32)),
            tokens_bs, response_mask_bl, ends_bl)
        return StepScores(scores_bl=scores_bl, step_end_bl=ends_bl, prompt_score_b=prompt_b)


def tree_candidates(children, parent_of_child):
    """Candidates of one round: prompt (1, 9), each action then the delimiter, left-padded to W."""
    width = 2 + 2 * max(len(x) for x in children)

    def rows(paths):
        seqs = [[1, 9] + [tok for a in x for tok in (a, DELIM)] for x in paths]
        tokens = np.array([[PAD] * (width - len(q)) + q for q in seqs], np.int32)
        response = np.array([[0] * (width - 2 * len(x)) + [1] * 2 * len(x) for x in paths], np.int32)
        return tokens, (tokens != PAD).astype(np.int32), response

    parents = [x[:-1] for x in children]
    (t, m, r), (pt, pm, pr) = rows(children), rows(parents)
    step = np.zeros_like(m)
    step[:, -2:] = 1
    return StepCandidates(tokens_nw=t, mask_nw=m, step_mask_nw=step, response_mask_nw=r,
                          parent_n=np.array(parent_of_child), parent_tokens_mw=pt, parent_mask_mw=pm,
                          parent_response_mask_mw=pr, step_index_n=np.array([len(x) - 1 for x in children]),
                          live_n=np.ones(len(children), int))


def test_pav_effective_reward_on_a_hand_built_tree():
    # Q^pi of prefixes (by response): root 0.2; steps a -> 0.5, b -> 0.1; then a,a -> 0.9, a,b -> 0.0.
    q_model = TableQ({(): 0.2, (4,): 0.5, (5,): 0.1, (4, 4): 0.9, (4, 5): 0.0})

    def bok(q, k):
        return 1 - (1 - q) ** k

    alpha, k = 0.5, 4
    scorer = verifier_step_scorer(PavVerifier(q_model, alpha=alpha, best_of_k=k))
    first = scorer(tree_candidates([(4,), (5,)], [0, 0]))
    expected_adv = [bok(0.5, k) - bok(0.2, k), bok(0.1, k) - bok(0.2, k)]  # V^mu(s_0) from the prompt
    np.testing.assert_allclose(first, [0.5 + alpha * expected_adv[0], 0.1 + alpha * expected_adv[1]], atol=1e-6)
    assert expected_adv[1] < 0 < expected_adv[0]
    second = scorer(tree_candidates([(4, 4), (4, 5)], [0, 1]))
    np.testing.assert_allclose(second, [0.9 + alpha * (bok(0.9, k) - bok(0.5, k)),
                                        0.0 + alpha * (0.0 - bok(0.5, k))], atol=1e-6)
    # K = 1: the prover is pi itself and A = Q^pi(child) - Q^pi(parent)
    plain = verifier_step_scorer(PavVerifier(q_model, alpha=1.0, best_of_k=1))(tree_candidates([(4, 4)], [0]))
    np.testing.assert_allclose(plain, [0.9 + (0.9 - 0.5)], atol=1e-6)
    q_only = verifier_step_scorer(PavVerifier(q_model, alpha=0.0))(tree_candidates([(4, 5)], [0]))
    np.testing.assert_allclose(q_only, [0.0], atol=1e-6)


def test_pav_keeps_siblings_in_q_order_and_rewards_progress_across_parents():
    rng = np.random.default_rng(0)
    q_child = rng.random(3)
    siblings = TableQ({(): 0.2, (4,): 0.3, **{(4, a): float(q) for a, q in zip(ACTIONS, q_child)}})
    scores = verifier_step_scorer(PavVerifier(siblings, alpha=2.0, best_of_k=4))(
        tree_candidates([(4, a) for a in ACTIONS], [0, 0, 0]))
    np.testing.assert_array_equal(np.argsort(scores), np.argsort(q_child))
    # Q 0.6 reached from 0.1 beats Q 0.65 reached from 0.6
    cross = TableQ({(): 0.2, (4,): 0.1, (5,): 0.6, (4, 4): 0.6, (5, 4): 0.65})
    scores = verifier_step_scorer(PavVerifier(cross, alpha=2.0, best_of_k=4))(tree_candidates([(4, 4), (5, 4)], [0, 1]))
    assert scores[0] > scores[1]


def test_implicit_prm_scores_the_new_steps_log_ratios(tiny_policy):
    config = tiny_policy.config
    prm = Transformer(config, rngs=nnx.Rngs(1))
    tokens = np.array([[0, 0, 1, 5, 6, 3, 8, 2]], np.int32)
    mask = (tokens > 0).astype(np.int32)
    step = np.zeros_like(mask)
    step[0, -2:] = 1
    response = (np.arange(8)[None] >= 4).astype(np.int32)
    c = StepCandidates(tokens_nw=tokens, mask_nw=mask, step_mask_nw=step, response_mask_nw=response,
                       parent_n=np.array([0]), parent_tokens_mw=tokens, parent_mask_mw=mask,
                       parent_response_mask_mw=(np.arange(8)[None] >= 6).astype(np.int32),
                       step_index_n=np.array([1]), live_n=np.array([1]))
    real = jnp.asarray(tokens[:, 2:])  # the same sequence without padding
    ratio = np.asarray(token_logprobs(prm, real) - token_logprobs(tiny_policy, real))[0]
    verifier = ImplicitPRMVerifier(prm, tiny_policy, reward=ImplicitRewardConfig(beta=0.1), name="test",
                                   tokenizer=None, delimiter_ids=(DELIM,))
    step_score = verifier_step_scorer(verifier)(c)
    np.testing.assert_allclose(step_score, [0.1 * ratio[-2:].sum()], rtol=1e-4, atol=1e-6)
    cumulative = verifier_step_scorer(verifier.with_reading("cumulative"))(c)
    np.testing.assert_allclose(cumulative, [0.1 * ratio[-4:].sum()], rtol=1e-4, atol=1e-6)
    # min over the response's two steps (6, 3 | 8, 2) of the per-step rewards
    final = final_scorer(verifier, "min")(tokens, mask, response)
    np.testing.assert_allclose(final, [0.1 * min(ratio[-4:-2].sum(), ratio[-2:].sum())], rtol=1e-4, atol=1e-6)


def test_a_verifier_guides_the_search_and_picks_the_answer(tiny_policy):
    """beam_search takes a StepVerifier directly; the final pick is the best "last" score."""
    q_model = TableQ({(): 0.2, (4,): 0.9, (5,): 0.6, (6,): 0.1, (5, 6): 1.0, (5, 4): 0.2, (5, 5): 0.2,
                      (4, 4): 0.1, (4, 5): 0.1, (4, 6): 0.1, (5, 6, 4): 1.0, (5, 6, 5): 0.3, (5, 6, 6): 0.3,
                      **{(a, b, c): 0.0 for a in ACTIONS for b in ACTIONS for c in ACTIONS
                         if (a, b) != (5, 6)}, **{(a, b): 0.0 for a in (6,) for b in ACTIONS}})
    config = BeamSearchConfig(beam_width=2, proposals=3, max_steps=6, max_step_tokens=8, max_response_tokens=16,
                              eos_id=EOS, step_stop_ids=(DELIM,), pad_id=PAD)
    prompt = np.array([[PAD, 1, 9]], np.int32)
    result = beam_search(None, prompt, (prompt != PAD).astype(np.int32), key=jax.random.key(0),
                         step_scorer=q_model, final_scorer=final_scorer(q_model, "last"), config=config,
                         proposer=toy_proposer(depth=3))
    assert path_of(result.response_pl[0], result.response_mask_pl[0]) == TARGET
