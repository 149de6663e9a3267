"""Checkpoints round-trip with their shardings, and damaged ones are refused."""


import jax
import jax.numpy as jnp
import numpy as np
import pytest

from prime_jax import sharding
from prime_jax.checkpoint import Checkpointer, CheckpointError


def _state():
    mesh = sharding.make_mesh(sharding.MeshConfig(data=2, fsdp=4))
    w = jax.device_put(jnp.linspace(-1.0, 1.0, 64).reshape(8, 8),
                       sharding.named_sharding(mesh, ("embed", None), (8, 8), sharding.PARAM_RULES))
    return {"w": w, "step": jnp.int32(3), "rng": jax.random.key_data(jax.random.key(0)), "prm": None}


def test_round_trip_keeps_values_sharding_and_metadata(tmp_path):
    state = _state()
    with Checkpointer(tmp_path) as checkpointer:
        checkpointer.save(3, state, {"data": {"epoch": 1, "cursor": 7}, "buffer": [[1, 2]]})
        restored, meta = checkpointer.restore(state)
    assert meta == {"data": {"epoch": 1, "cursor": 7}, "buffer": [[1, 2]]}
    np.testing.assert_array_equal(restored["w"], state["w"])
    assert restored["w"].sharding.is_equivalent_to(state["w"].sharding, 2)
    assert restored["prm"] is None and int(restored["step"]) == 3


def test_keeps_only_the_newest(tmp_path):
    with Checkpointer(tmp_path, max_to_keep=2) as checkpointer:
        for step in (1, 2, 3):
            checkpointer.save(step, _state(), {})
        assert checkpointer.all_steps() == [2, 3] and checkpointer.latest_step() == 3


def test_missing_step_names_the_directory(tmp_path):
    with Checkpointer(tmp_path) as checkpointer, pytest.raises(CheckpointError, match="no checkpoint for step 9"):
        checkpointer.restore(_state(), step=9)


def test_damaged_checkpoint_is_refused(tmp_path):
    state = _state()
    with Checkpointer(tmp_path) as checkpointer:
        checkpointer.save(1, state, {})
    data_files = [p for p in (tmp_path / "1" / "state").rglob("*")
                  if p.is_file() and p.parent.name == "d"]
    assert data_files
    for path in data_files:
        raw = bytearray(path.read_bytes())
        for i in range(len(raw) // 2, len(raw)):
            raw[i] ^= 0x5A
        path.write_bytes(bytes(raw))
    with Checkpointer(tmp_path) as checkpointer, pytest.raises(CheckpointError, match="refused"):
        checkpointer.restore(state)
