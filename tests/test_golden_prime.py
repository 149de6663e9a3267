"""Parity with the PRIME reference (golden vectors in ../shared/golden/prime, see its README).

f32 files: 1e-5 absolute. f64 files run under ``jax.enable_x64(True)`` (a context manager, so x64
does not leak into other tests) at 1e-12, except outputs the reference itself stores in float32
(``token_level_score_*``, ``rm_scores_batch_norm``), compared at float32 precision.
"""

import functools
import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from prime_jax import advantages as adv_lib
from prime_jax import losses, rewards
from prime_jax.models.logprobs import next_token_stats
from prime_jax.scans import SCAN_METHODS

PRIME_DIR = pathlib.Path(__file__).resolve().parents[1].parent / "shared" / "golden" / "prime"
TOL = {"f32": 1e-5, "f64": 1e-12}
F32_STORED_TOL = 1e-6  # f64 inputs whose reference output is a float32 tensor
def _files(family):
    if not (PRIME_DIR / "manifest.json").is_file():
        return ["<golden folder absent>"]  # the golden_dir fixture then skips with a message
    manifest = json.loads((PRIME_DIR / "manifest.json").read_text())["files"]
    return sorted(k for k, v in manifest.items() if v["family"] == family)


def _load(golden_dir, name):
    path = golden_dir / "prime" / name
    assert path.exists(), f"manifest lists {name} but the file is missing"
    with np.load(path) as z:
        return {k: z[k] for k in z.files}, ("f64" if name.endswith("_f64.npz") else "f32")


def _check(got, want, tol, key, mask=None):
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    assert got.shape == want.shape, key
    diff = np.abs(got - want)
    if mask is not None:
        diff = np.where(np.asarray(mask, bool), diff, 0.0)
    err = float(diff.max())
    assert err <= tol, f"{key}: max abs err {err:.3e} > {tol:.0e}"


def test_golden_files_are_all_covered(golden_dir):
    manifest = json.loads((golden_dir / "prime" / "manifest.json").read_text())["files"]
    assert {v["family"] for v in manifest.values()} == {"rloo", "prm", "ppo"}
    on_disk = {p.name for p in (golden_dir / "prime").glob("*.npz")}
    assert on_disk == set(manifest), "golden .npz files and manifest.json disagree"


def _pad(d, keys, rows, cols):
    """Pad (B,) / (B, L) inputs with whole masked-out groups and columns (changes nothing), so
    that all files of a family share a few jit compilations."""
    out = {}
    for k in keys:
        v = d[k]
        widths = [(0, rows - v.shape[0])] + ([(0, cols - v.shape[1])] if v.ndim == 2 else [])
        out[k] = np.pad(v, widths)
    return out


@functools.partial(jax.jit, static_argnames=("n", "g_rm", "g_gt"))
def _rloo_all(rm, acc, m, *, n, g_rm, g_gt):
    out = {}
    for method in SCAN_METHODS:
        kw = dict(num_samples=n, process_gamma=g_rm, outcome_gamma=g_gt, scan_method=method)
        for suffix, (proc, outcome) in {"": (rm, acc), "_rm_only": (rm, None),
                                        "_gt_only": (None, acc)}.items():
            ret = adv_lib.rloo_returns(proc, outcome, m, **kw)
            out[(method, "returns" + suffix)] = ret
            out[(method, "advantages" + suffix)] = adv_lib.masked_whiten(ret, m)
    return out


@pytest.mark.parametrize("name", _files("rloo"))
def test_rloo_golden(golden_dir, name):
    d, kind = _load(golden_dir, name)
    tol, b, l = TOL[kind], *d["eos_mask"].shape
    p = _pad(d, ("rm_scores", "acc", "eos_mask"), 32, 32)
    n, g_rm, g_gt = int(d["n_samples"]), float(d["reward_model_gamma"]), float(d["verifier_gamma"])
    with jax.enable_x64(kind == "f64"):
        out = _rloo_all(p["rm_scores"], p["acc"], p["eos_mask"], n=n, g_rm=g_rm, g_gt=g_gt)
    for (method, key), got in out.items():
        assert got.dtype == d[key].dtype
        _check(got[:b, :l], d[key], tol, f"rloo/{kind}/{key.split('_')[0]}", d["eos_mask"])


@functools.partial(jax.jit, static_argnames=("n", "beta"))
def _prm_all(lp, ref, m, acc, *, n, beta):
    out = {"q": rewards.log_ratio(lp, ref, m)}
    for gran in ("token", "whole"):
        out[f"token_level_score_{gran}"] = rewards.implicit_process_rewards(
            lp, ref, m, granularity=gran, norm="none", beta=1.0)
    out["rm_scores_batch_norm"] = rewards.implicit_process_rewards(lp, ref, m)
    out["ce_loss"], metrics = losses.prm_ce_loss(lp, ref, m, acc, beta=beta, num_samples=n)
    out["dpo_acc"] = metrics["pairwise_acc"]
    scores = losses.sequence_scores(lp, ref, m)
    out["dpo_acc/direct"] = losses.pairwise_accuracy(scores, acc, num_samples=n)
    return out


@pytest.mark.parametrize("name", _files("prm"))
def test_prm_golden(golden_dir, name):
    d, kind = _load(golden_dir, name)
    tol, m, beta, n = TOL[kind], d["eos_mask"], float(d["beta"]), int(d["n_samples"])
    with jax.enable_x64(kind == "f64"):
        out = _prm_all(d["log_prob"], d["ref_log_prob"], m, d["acc"], n=n, beta=beta)
    for key, got in out.items():
        want = d[key.split("/")[0]]
        if want.dtype == np.float32:  # stored as float32 by the reference, also from f64 inputs
            assert got.dtype == np.float32, key
        key_tol = F32_STORED_TOL if (kind == "f64" and want.dtype == np.float32) else tol
        _check(got, want, key_tol, f"prm/{kind}/{key}", m if got.ndim == 2 else None)


@pytest.mark.parametrize("gammas", [(1.0, 1.0), (1.0, 0.9), (0.99, 0.9)])
@pytest.mark.parametrize("name", _files("prm"))
def test_fused_kernel_matches_golden_pieces(golden_dir, name, gammas):
    """prime_advantages == rloo_returns(golden batch-norm rewards) + masked_whiten."""
    d, kind = _load(golden_dir, name)
    m, n = d["eos_mask"], int(d["n_samples"])
    kw = dict(process_gamma=gammas[0], outcome_gamma=gammas[1])
    pieces = jax.jit(lambda r, acc, m: adv_lib.rloo_returns(r, acc, m, num_samples=n, **kw))
    with jax.enable_x64(kind == "f64"):
        out = adv_lib.prime_advantages(d["log_prob"], d["ref_log_prob"], m, d["acc"], num_samples=n,
                                       advantage=adv_lib.AdvantageConfig(**kw))
        ret = pieces(d["rm_scores_batch_norm"], d["acc"], m)
        want_adv = jax.jit(adv_lib.masked_whiten)(ret, m)
    _check(out.process_rewards, d["rm_scores_batch_norm"], 1e-6, f"fused/{kind}/rewards", m)
    _check(out.returns, ret, 1e-5, f"fused/{kind}/returns", m)
    _check(out.advantages, want_adv, 1e-5, f"fused/{kind}/adv", m)


@functools.partial(jax.jit, static_argnames=("clip",))
def _ppo_all(lp, old, adv, m, logits, *, clip):
    loss, met = losses.ppo_policy_loss(lp, old, adv, m, clip_eps=clip, agg="token-mean")
    _, entropy_bt = next_token_stats(logits, jnp.zeros(logits.shape[:2], jnp.int32), 1.0)
    ent = losses.masked_mean(entropy_bt, m)
    return {"pg_loss": loss, "pg_loss/metric": met["pg_loss_token_mean"],
            "pg_clipfrac": met["clip_frac"], "ppo_kl": met["approx_kl"], "entropy_loss": ent}


@pytest.mark.parametrize("name", _files("ppo"))
def test_ppo_golden(golden_dir, name):
    d, kind = _load(golden_dir, name)
    with jax.enable_x64(kind == "f64"):
        out = _ppo_all(d["log_prob"], d["old_log_prob"], d["advantages"], d["eos_mask"],
                       d["logits"], clip=float(d["cliprange"]))
    for key, got in out.items():
        want = d[key.split("/")[0]]
        # pg_clipfrac is a float32 tensor in the reference (a bool mask .float()) even for f64
        key_tol = F32_STORED_TOL if (kind == "f64" and want.dtype == np.float32) else TOL[kind]
        if key == "entropy_loss":  # the library's log-softmax runs in float32 (logits are float32)
            key_tol = max(key_tol, TOL["f32"])
        _check(got, want, key_tol, f"ppo/{kind}/{key}")
