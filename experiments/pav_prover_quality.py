"""Prover-strength sweep on the didactic task (Rewarding Progress, arXiv 2410.08146, section 3.3):
the distinguishability and alignment of each prover mu_gamma for the SFT policy, next to how
fast the effective reward ``Q^pi + alpha A^{mu_gamma}`` trains that policy.

    python experiments/pav_prover_quality.py                       # seeds 0 1 2, 50 SFT steps (~5 min)
    python experiments/pav_prover_quality.py --sft-iterations 1000 --q-rollouts 16 --rl-cap 300
    python experiments/pav_prover_quality.py --seeds 0 --gammas 5 10 --rl-cap 0   # quantities only

(times on a 2-core CPU at load ~8.)

Per seed: the same hidden target and SFT policy as ``experiments/pav_didactic.py`` (seed s:
``didactic.random_target(default_rng(s))``, ``didactic_rl.sft_policy(config, target, s)``). Then:

- States: the alive prefixes (no EOS yet) of ``--trajectories`` rollouts of pi, i.e. samples of
  pi's state distribution summed over positions h = 0..9.
- ``pi(a | s)`` exactly, for all 15 actions, from one forward pass (softmax of the logits).
- ``Q^{mu_gamma}(s, a)`` exactly for all 15 actions: ``V^{mu_gamma}(h + 1, delta(m, a))`` from
  ``didactic.prover_values`` (m = the KMP matched-prefix state of s). gamma = inf (the perfect
  prover, mu always emits the next token of y*) is taken as gamma = 1e12.
- ``Q^pi(s, a)`` for all 15 actions: exact where the outcome is already decided (a = EOS, a
  completes y*, s already contains y*, or a is the last token), else the mean outcome of
  ``--q-rollouts`` rollouts of pi from s + a (one batched ``rollout.sample`` call per chunk);
  policy rollouts cannot be enumerated exactly (15^9 continuations, and pi depends on the whole
  prefix, not only on the automaton state). The MC noise is removed from pi's own spread with
  ``prover_quality.mc_noise_variance`` (the alignment C is unbiased without correction).
- ``prover_quality.quality`` for every gamma (one set of states and Q^pi per seed, shared by all
  gammas): D = E_s Var_pi A^mu, C = E_s Cov_pi(A^mu, A^pi), rho = C / sqrt(D D(pi; pi)).
- Unless ``--rl-cap 0``: one effective-reward policy-gradient run per gamma from that SFT policy
  (``didactic_rl.train_policy_gradient``, alpha ``--alpha``), scored as in pav_didactic: iterations
  until the 20-iteration moving average of the training reward reaches 0.9 (cut runs count as the
  cap).

Prints one markdown table (mean +- sample std over seeds) and ends with the line
``pav_prover_quality: best_D_gamma=<g> best_D_no_eos_gamma=<g> best_rho_gamma=<g> fastest_gamma=<g>``.
The "non-EOS" columns condition pi on a != EOS (``prover_quality.condition_on_actions``): they
separate "make progress towards y*" from "do not stop" (the perfect prover's Q differs across
actions mostly by EOS).
"""

from __future__ import annotations

import argparse
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from tqdm import tqdm

from prime_jax.pav import didactic, didactic_rl
from prime_jax.pav import prover_quality as pq
from prime_jax.rollout import SamplingConfig, sample

INF_GAMMA = 1e12
L, V = didactic.LENGTH, didactic.VOCAB


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--gammas", type=float, nargs="+", default=[1, 2, 5, 8, 10, 15, 20, 50, float("inf")])
    parser.add_argument("--sft-iterations", type=int, default=50)
    parser.add_argument("--trajectories", type=int, default=256, help="rollouts of pi whose prefixes are the states")
    parser.add_argument("--q-rollouts", type=int, default=8, help="MC rollouts of pi per (state, action) for Q^pi")
    parser.add_argument("--chunk", type=int, default=256, help="(state, action) prompts per sampling call")
    parser.add_argument("--alpha", type=float, default=1.0)
    parser.add_argument("--rl-cap", type=int, default=400, help="policy-gradient iterations per gamma (0: skip RL)")
    parser.add_argument("--target", type=float, default=0.9)
    parser.add_argument("--window", type=int, default=20)
    return parser.parse_args(argv)


def policy_states(graphdef, params, num: int, key) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rollouts of pi and its exact next-token distributions: tokens (B, L), mask (B, L) (1 where
    the state before token l is alive), probs (B, L, V) = pi(. | BOS + tokens[:l])."""
    policy = nnx.merge(graphdef, params)
    prompt_b1 = jnp.full((num, 1), didactic_rl.BOS, jnp.int32)
    rollouts = sample(policy, prompt_b1, jnp.ones_like(prompt_b1), key=key, config=didactic_rl.SAMPLING)
    tokens_bl, mask_bl = np.asarray(rollouts.tokens), np.asarray(rollouts.mask)
    logits_btv = policy(jnp.concatenate([prompt_b1, jnp.asarray(tokens_bl)], axis=1))
    probs_blv = np.asarray(jax.nn.softmax(logits_btv[:, :L].astype(jnp.float32), axis=-1), np.float64)
    return tokens_bl, mask_bl, probs_blv / probs_blv.sum(-1, keepdims=True)


def mc_q_pi(graphdef, params, prefixes_nl, lengths_n, *, num_rollouts: int, chunk: int, key, target) -> np.ndarray:
    """Mean outcome (N,) of ``num_rollouts`` rollouts of pi after each response prefix
    ``prefixes_nl[n, :lengths_n[n]]`` (left-padded prompts BOS + prefix, continuations cut to L)."""
    policy = nnx.merge(graphdef, params)
    config = SamplingConfig(max_new_tokens=L - 1, eos_id=didactic.EOS, pad_id=didactic.EOS, decode_segments=1)
    n_rows = prefixes_nl.shape[0]
    out = np.zeros(n_rows)
    cols_t = np.arange(L + 1)
    for start in range(0, n_rows, chunk):
        rows = np.arange(start, start + chunk) % n_rows  # fixed shape: wrap the last chunk
        pre_cl, len_c = prefixes_nl[rows], lengths_n[rows]
        full_ct = np.concatenate([np.full((chunk, 1), didactic_rl.BOS), pre_cl], axis=1)  # BOS + prefix
        src_ct = cols_t[None, :] - (L - len_c)[:, None]  # right-align the len + 1 real columns
        mask_ct = (src_ct >= 0).astype(np.int32)
        prompts_ct = np.where(mask_ct > 0, np.take_along_axis(full_ct, np.clip(src_ct, 0, L), 1), didactic.EOS)
        cont = np.asarray(sample(policy, jnp.asarray(prompts_ct, jnp.int32), jnp.asarray(mask_ct),
                                 key=jax.random.fold_in(key, start), config=config,
                                 num_samples=num_rollouts).tokens)  # (chunk * n, L - 1)
        pre_rl = np.repeat(pre_cl, num_rollouts, axis=0)
        len_r = np.repeat(len_c, num_rollouts)
        cols_l = np.arange(L)[None, :]
        cont_idx = np.clip(cols_l - len_r[:, None], 0, L - 2)
        resp_rl = np.where(cols_l < len_r[:, None], pre_rl, np.take_along_axis(cont, cont_idx, 1))
        r_c = didactic.outcome_rewards(resp_rl, target).reshape(chunk, num_rollouts).mean(axis=1)
        keep = np.arange(start, min(start + chunk, n_rows))
        out[keep] = r_c[:len(keep)]
    return out


def seed_quantities(seed: int, args) -> tuple[dict[float, dict[str, float]], dict]:
    """``{gamma: prover_quality.quality(...)}`` for the SFT policy of one seed, and run facts."""
    config = didactic_rl.DidacticConfig(sft_iterations=args.sft_iterations)
    target = didactic.random_target(np.random.default_rng(seed))
    graphdef, params = didactic_rl.sft_policy(config, target, seed)
    key_states, key_q = jax.random.split(jax.random.key(10_000 + seed))
    tokens_bl, mask_bl, probs_blv = policy_states(graphdef, params, args.trajectories, key_states)
    m_bl = didactic.matched_states(tokens_bl, target)[:, :L]  # automaton state before token l
    b_s, h_s = np.nonzero(mask_bl)
    pi_sv, m_s = probs_blv[b_s, h_s], m_bl[b_s, h_s]
    delta_ma = didactic.transitions(target)
    next_sv = delta_ma[m_s]  # automaton state after each action
    # Q^pi: exact where decided, MC elsewhere
    decided_sv = (next_sv == didactic.FOUND) | (next_sv == didactic.ENDED) | (h_s[:, None] == L - 1)
    q_pi_sv = (next_sv == didactic.FOUND).astype(np.float64)
    s_idx, a_idx = np.nonzero(~decided_sv)
    prefixes_nl = tokens_bl[b_s[s_idx]].copy()
    prefixes_nl[np.arange(len(s_idx)), h_s[s_idx]] = a_idx
    t0 = time.time()
    q_pi_sv[s_idx, a_idx] = mc_q_pi(graphdef, params, prefixes_nl, h_s[s_idx] + 1, num_rollouts=args.q_rollouts,
                                    chunk=args.chunk, key=key_q, target=target)
    noise_sv = np.where(decided_sv, 0.0, pq.mc_noise_variance(q_pi_sv, args.q_rollouts))
    facts = {"states": len(b_s), "mc_pairs": len(s_idx), "mc_s": time.time() - t0,
             "pi_success": float(didactic.outcome_rewards(tokens_bl, target).mean()),
             "v_pi": float(np.mean(pq.policy_mean(pi_sv, q_pi_sv)[h_s == 0]))}
    not_eos_sv = np.broadcast_to(np.arange(V) != didactic.EOS, pi_sv.shape)
    tok_pi_sv, tok_s = pq.condition_on_actions(pi_sv, not_eos_sv)  # pi(. | s, a != EOS)
    result = {}
    for gamma in args.gammas:
        values_hm = didactic.prover_values(target, INF_GAMMA if np.isinf(gamma) else gamma)
        q_mu_sv = values_hm[h_s[:, None] + 1, next_sv]
        result[gamma] = pq.quality(pi_sv, q_mu_sv, q_pi_sv, q_pi_noise_sv=noise_sv)
        tok = pq.quality(tok_pi_sv, q_mu_sv, q_pi_sv, mask_s=tok_s, q_pi_noise_sv=noise_sv)
        result[gamma].update({f"{name}_no_eos": value for name, value in tok.items()})
    return result, {"facts": facts, "target": target, "sft": (graphdef, params)}


def rl_iterations(gamma: float, seed: int, target, sft, args) -> int | None:
    config = didactic_rl.DidacticConfig(sft_iterations=args.sft_iterations, alpha=args.alpha,
                                        prover_gamma=INF_GAMMA if np.isinf(gamma) else gamma)
    reached = lambda rewards: len(rewards) >= args.window and np.mean(rewards[-args.window:]) >= args.target
    rewards = didactic_rl.train_policy_gradient("effective", config, target, *sft, iterations=args.rl_cap,
                                                seed=seed, stop=reached)
    return didactic_rl.iterations_to_target(rewards, args.target, args.window, args.rl_cap)


def mean_std(xs) -> str:
    xs = np.asarray(xs, np.float64)
    if np.any(np.isnan(xs)):
        return "nan" if np.all(np.isnan(xs)) else mean_std(xs[~np.isnan(xs)]) + f" ({np.sum(np.isnan(xs))} nan)"
    return f"{xs.mean():.3g} ± {xs.std(ddof=1) if len(xs) > 1 else 0.0:.2g}"


NAMES = ("distinguishability", "distinguishability_no_eos", "alignment", "correlation", "correlation_no_eos")


def main(argv=None) -> None:
    args = parse_args(argv)
    per_gamma = {g: {name: [] for name in (*NAMES, "rl")} for g in args.gammas}
    spreads = {"pi_spread": [], "pi_spread_no_eos": []}
    for seed in tqdm(args.seeds, desc="seeds", file=sys.stderr):
        quantities, run = seed_quantities(seed, args)
        facts, first = run["facts"], quantities[args.gammas[0]]
        print(f"seed={seed} target={run['target']} states={facts['states']} mc_pairs={facts['mc_pairs']} "
              f"mc_time={facts['mc_s']:.0f}s pi_success={facts['pi_success']:.3f} V^pi(s0)~{facts['v_pi']:.4f} "
              f"D(pi;pi)={first['pi_spread']:.3g} D_no_eos(pi;pi)={first['pi_spread_no_eos']:.3g}", flush=True)
        for name in spreads:
            spreads[name].append(first[name])
        for gamma in tqdm(args.gammas, desc=f"seed {seed} gammas", file=sys.stderr, leave=False):
            q = quantities[gamma]
            for name in NAMES:
                per_gamma[gamma][name].append(q[name])
            n = rl_iterations(gamma, seed, run["target"], run["sft"], args) if args.rl_cap else None
            per_gamma[gamma]["rl"].append(n)
            print(f"  gamma={gamma:g} " + " ".join(f"{name}={q[name]:.4g}" for name in NAMES)
                  + (f" rl_iterations={n if n is not None else 'cut@%d' % args.rl_cap}" if args.rl_cap else ""),
                  flush=True)
    print()
    print(f"D(pi; pi) = E_s Var_pi A^pi (noise-corrected): all actions {mean_std(spreads['pi_spread'])}, "
          f"non-EOS actions {mean_std(spreads['pi_spread_no_eos'])}")
    print()
    print("| gamma | D = E_s Var_pi A^mu | D, non-EOS actions | C = E_s Cov_pi(A^mu, A^pi) | rho | rho, non-EOS "
          f"| effective-reward iterations to {args.target:g} (alpha {args.alpha:g}) |")
    print("|---|---|---|---|---|---|---|")
    for gamma in args.gammas:
        row = per_gamma[gamma]
        if not args.rl_cap:
            rl_cell = "-"
        else:
            cells = [f"cut@{args.rl_cap}" if n is None else str(n) for n in row["rl"]]
            rl_cell = ", ".join(cells) + " = " + mean_std([args.rl_cap if n is None else n for n in row["rl"]])
        print(f"| {gamma:g} | " + " | ".join(mean_std(row[name]) for name in NAMES) + f" | {rl_cell} |")
    def best(name):
        finite = {g: np.mean(v) for g in args.gammas if not np.any(np.isnan(v := per_gamma[g][name]))}
        return max(finite, key=finite.get) if finite else float("nan")
    fastest = (min(args.gammas, key=lambda g: np.mean([args.rl_cap if n is None else n for n in per_gamma[g]["rl"]]))
               if args.rl_cap else float("nan"))
    print(f"pav_prover_quality: best_D_gamma={best('distinguishability'):g} "
          f"best_D_no_eos_gamma={best('distinguishability_no_eos'):g} best_rho_gamma={best('correlation'):g} "
          f"fastest_gamma={fastest:g}")


if __name__ == "__main__":
    main()
