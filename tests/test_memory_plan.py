"""``python -m prime_jax.memory_plan``: the 0.5B config's rollout decode step and log-prob pass,
compiled ahead of time for a TPU v5e 2x2 slice by libtpu on the CPU (no TPU), report per-device
bytes that match a hand count of the sharded weights, cache and batch.

The plan runs in a subprocess: libtpu stays out of the test worker, and the CLI, its gin
parsing and its JSON file are what is checked. One layer instead of 24 (``--num-layers 1``) and
the two gradient-free programs keep it near a minute on 2 cores: every layer holds the same
bytes, and an update program's backward pass costs XLA's TPU compiler over a minute per layer.
"""

import json
import os
import subprocess
import sys

import pytest

pytest.importorskip("libtpu", reason="libtpu (the test extra) compiles for TPU without one")

from prime_jax import memory_plan  # noqa: E402

GIB = 1024 ** 3
# Qwen2.5-0.5B (configs/prime_qwen2.5_0.5b.gin): float32 weights, tied embedding.
V, D, F, HEADS, KV, HD = 151936, 896, 4864, 14, 2, 64
P, L, ROLLOUT_ROWS = 1024, 3072, 64 * 4 * 4  # max_prompt_length, max_new_tokens, prompts x oversample x n
FSDP = 4  # v5e:2x2 has 4 chips: MeshConfig.fsdp = 4 instead of the config's 8


def _run(*args, timeout=600, env=None):
    env = {**os.environ, "JAX_PLATFORMS": "cpu", **(env or {})}
    env.pop("XLA_FLAGS", None)  # no virtual CPU devices needed: the devices are the topology's
    return subprocess.run([sys.executable, "-m", "prime_jax.memory_plan", *args], capture_output=True,
                          text=True, env=env, timeout=timeout)


def _param_bytes(layers: int, fsdp: int) -> int:
    """Per-device float32 weight bytes: every matrix has an ``embed`` dim, stored over fsdp;
    biases and norms are replicated."""
    matrices = V * D + layers * (D * HEADS * HD + 2 * D * KV * HD + HEADS * HD * D + 3 * D * F)
    replicated = layers * ((HEADS + 2 * KV) * HD + 2 * D) + D
    return 4 * (matrices // fsdp + replicated)


@pytest.fixture(scope="module")
def plan(tmp_path_factory):
    out = tmp_path_factory.mktemp("plan") / "plan.json"
    result = _run("--gin", "configs/prime_qwen2.5_0.5b.gin", "--topology", "v5e:2x2",
                  "--gin", f"prime_jax.sharding.MeshConfig.fsdp = {FSDP}", "--num-layers", "1",
                  "--programs", "decode,logprob", "--out", str(out))
    assert result.returncode in (0, 1), result.stderr[-3000:]
    return json.loads(out.read_text()), result.stdout


def test_plan_reads_the_config_and_the_topology(plan):
    data, stdout = plan
    assert data["devices"] == 4 and data["device_kind"] == "TPU v5 lite"
    assert data["mesh"] == {"data": 1, "fsdp": FSDP, "tensor": 1}
    assert data["hbm_per_device"] == 16 * GIB
    assert data["model"] == {"layers": 1, "hidden": D, "vocab": V, "dtype": "bfloat16", "param_dtype": "float32",
                             "remat": True, "remat_barriers": True, "logits_chunk": 512,
                             "attention": "splash"}  # auto on TPU; barriers kept by default
    assert set(data["programs"]) == {"decode", "logprob"}
    assert "decode" in stdout and "logprob" in stdout and "fits" in stdout
    for row in data["programs"].values():
        for key in ("argument", "output", "temp", "code", "program", "total"):
            assert row[key] > 0, (key, row)
        assert row["program"] == row["argument"] + row["output"] - row["alias"] + row["temp"] + row["code"]


def test_argument_bytes_match_the_sharded_weights(plan):
    data, _ = plan
    weights, unsharded = _param_bytes(1, FSDP), _param_bytes(1, 1)
    # old/ref log-probs: weights + one rollout round's tokens and attention mask (int32); the
    # response mask gives only its shape, and jax.jit drops arguments a program does not read
    batch = 4 * ROLLOUT_ROWS * 2 * (P + L) // FSDP
    assert data["programs"]["logprob"]["argument"] == pytest.approx(weights + batch, rel=0.01)
    # the decode step: weights + bf16 KV cache of P + L - 1 slots (+ its bool mask) + tokens, positions
    slots = P + L - 1
    cache = (2 * ROLLOUT_ROWS * KV * slots * HD * 2 + ROLLOUT_ROWS * slots) // FSDP
    decode = data["programs"]["decode"]
    assert decode["argument"] == pytest.approx(weights + cache + 8 * ROLLOUT_ROWS // FSDP, rel=0.01)
    # the cache is donated: written in place, as the sampler's while-loop carry is
    assert decode["alias"] == pytest.approx(cache, rel=0.01)
    # while a program runs the trainer also holds the rest: PRM weights, reference and two Adam
    # states, whose two moments are sharded like their weights (training.state.init_optimizer)
    assert data["state_per_device"]["policy_params"] == pytest.approx(weights, rel=0.001)
    assert data["state_per_device"]["policy_opt"] == pytest.approx(2 * weights, rel=0.001)
    assert data["state_per_device"]["policy_opt"] < unsharded
    assert data["programs"]["logprob"]["resident"] == pytest.approx(6 * weights, rel=0.01)


@pytest.mark.parametrize("add_on, held", [
    ("configs/spro.gin", {"policy_params", "policy_opt", "reference_params"}),  # the policy is its own PRM
    ("prime_jax.advantages.AdvantageConfig.process_coef = 0.0", {"policy_params", "policy_opt"}),  # RLOO
])
def test_resident_state_is_what_the_trainer_holds_for_the_source(add_on, held, tmp_path):
    """The state the plan counts follows the run's process-reward source (``rl.step.SOURCES``), as
    ``trainer.initial_state`` does: no PRM weights without a trained PRM, a reference only when read."""
    out = tmp_path / "plan.json"
    result = _run("--gin", "configs/prime_qwen2.5_0.5b.gin", "--gin", add_on, "--topology", "v5e:2x2",
                  "--gin", f"prime_jax.sharding.MeshConfig.fsdp = {FSDP}", "--num-layers", "1",
                  "--programs", "", "--out", str(out), timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert set(json.loads(out.read_text())["state_per_device"]) == held


def test_a_bad_topology_is_named_with_the_ones_that_work():
    with pytest.raises(memory_plan.PlanError, match="'v9:2x2'.*v5e:2x4.*h100:8"):
        memory_plan.plan(["configs/prime_qwen2.5_0.5b.gin"], "v9:2x2")
    result = _run("--gin", "configs/prime_qwen2.5_0.5b.gin", "--topology", "v5e:3x3", timeout=120)
    assert result.returncode == 2
    assert "'v5e:3x3'" in result.stderr and "v5e:2x4" in result.stderr


def test_attention_backend_is_a_plan_setting(plan, tmp_path):
    """``--attention xla`` (the einsum: float32 (T, S) scores per head) against the config's
    ``auto`` (splash on TPU: no score matrix) for the same log-prob pass: the einsum's scratch is
    the larger (at 1 layer the 512-position float32 logits chunk dominates both)."""
    out = tmp_path / "xla.json"
    result = _run("--gin", "configs/prime_qwen2.5_0.5b.gin", "--topology", "v5e:2x2", "--attention", "xla",
                  "--gin", f"prime_jax.sharding.MeshConfig.fsdp = {FSDP}", "--num-layers", "1",
                  "--programs", "logprob", "--out", str(out))
    assert result.returncode in (0, 1), result.stderr[-3000:]
    einsum = json.loads(out.read_text())
    assert einsum["model"]["attention"] == "xla" and "xla attention" in result.stdout
    splash_temp, einsum_temp = plan[0]["programs"]["logprob"]["temp"], einsum["programs"]["logprob"]["temp"]
    assert splash_temp < einsum_temp, (splash_temp, einsum_temp)


def test_an_update_too_large_already_at_the_shallow_depth_is_reported_not_raised(tmp_path):
    """Extrapolating the update programs from 1 and 2 layers: when the compiler refuses the 1-layer
    program (here the einsum's float32 scores of a 16k-token sequence), the full model cannot fit
    either; the plan says so in its row and exits 1 instead of stopping with a traceback."""
    out = tmp_path / "plan.json"
    result = _run("--gin", "configs/prime_qwen2.5_0.5b.gin", "--topology", "v5e:2x2", "--attention", "xla",
                  "--gin", f"prime_jax.sharding.MeshConfig.fsdp = {FSDP}", "--gin",
                  "prime_jax.rollout.SamplingConfig.max_new_tokens = 15360", "--programs", "policy_update",
                  "--extrapolate-from", "1,2", "--out", str(out))
    assert result.returncode == 1, result.stderr[-3000:]
    row = json.loads(out.read_text())["programs"]["policy_update"]
    assert row["fits"] is False and row["compile_error"].startswith("already at 1 layers: RESOURCE_EXHAUSTED")
    assert "policy_update  does not fit: the compiler refused it: already at 1 layers" in result.stdout


def test_gpu_plan_counts_the_same_bytes_against_jaxs_share_of_the_memory(tmp_path):
    """The same config planned for four H100s (the CUDA plugin compiles for them on this CPU): the
    weights and the batch take the bytes the hand count gives, attention is cuDNN (``auto`` on a
    GPU), and a program fits against JAX's allocator share of the card (XLA_PYTHON_CLIENT_MEM_FRACTION,
    0.9 here; default 0.75), not the whole card."""
    pytest.importorskip("jax_cuda12_plugin", reason="the CUDA plugin (test extra) compiles for GPUs")
    out = tmp_path / "plan.json"
    env = {"XLA_PYTHON_CLIENT_MEM_FRACTION": "0.9"}
    result = _run("--gin", "configs/prime_qwen2.5_0.5b.gin", "--topology", "h100:4",
                  "--gin", f"prime_jax.sharding.MeshConfig.fsdp = {FSDP}", "--num-layers", "1",
                  "--programs", "decode,logprob", "--out", str(out), env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    data = json.loads(out.read_text())
    assert data["devices"] == 4 and data["device_kind"] == "NVIDIA H100 80GB HBM3"
    assert data["hbm_per_device"] == int(81559 * 1024 ** 2 * 0.9) and data["gpu_memory_fraction"] == 0.9
    assert data["model"]["attention"] == "cudnn"
    assert "71.7 GiB per device: JAX's allocator takes 0.9 of 79.6" in result.stdout
    weights = _param_bytes(1, FSDP)
    batch = 4 * ROLLOUT_ROWS * 2 * (P + L) // FSDP
    assert data["programs"]["logprob"]["argument"] == pytest.approx(weights + batch, rel=0.01)
    slots = P + L - 1
    cache = (2 * ROLLOUT_ROWS * KV * slots * HD * 2 + ROLLOUT_ROWS * slots) // FSDP
    assert data["programs"]["decode"]["alias"] == pytest.approx(cache, rel=0.01)


def test_a_slot_sampler_is_planned_whole_instead_of_the_static_decode_step(tmp_path):
    """With ``SamplingConfig.decode_slots`` (and ``kv_blocks``) the rollout is the paged slot loop,
    not the static batch: the plan compiles that sampler (``sample``) in place of ``decode``, for
    two H100s (a GPU compile of the loop takes seconds here; a TPU one minutes)."""
    pytest.importorskip("jax_cuda12_plugin", reason="the CUDA plugin (test extra) compiles for GPUs")
    out = tmp_path / "plan.json"
    result = _run("--gin", "configs/prime_qwen2.5_0.5b.gin", "--topology", "h100:2",
                  "--gin", "prime_jax.sharding.MeshConfig.fsdp = 2", "--num-layers", "1", "--programs", "decode",
                  "--gin", "prime_jax.rollout.SamplingConfig.decode_slots = 64",
                  "--gin", "prime_jax.rollout.SamplingConfig.kv_blocks = 4096", "--out", str(out))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "planning the slot sampler (sample) instead of the static batch's decode step" in result.stderr
    programs = json.loads(out.read_text())["programs"]
    assert set(programs) == {"sample"}
    assert programs["sample"]["shapes"] == f"R={ROLLOUT_ROWS} requests, 64 slots, 4096 blocks of 16, P={P}, L={L}"
    # the pool alone: 2 x 4096 blocks x 16 slots x 2 kv heads x 64 x bf16
    assert programs["sample"]["temp"] > 2 * 4096 * 16 * KV * HD * 2
