"""Mesh construction, logical-axis rules and batch placement on 8 CPU devices."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from prime_jax import sharding


def test_mesh_config_fills_the_rest():
    assert sharding.MeshConfig(data=-1, fsdp=2, tensor=2).shape(8) == (2, 2, 2)
    assert sharding.MeshConfig(data=1, fsdp=-1, tensor=1).shape(8) == (1, 8, 1)


@pytest.mark.parametrize("config, message", [
    (sharding.MeshConfig(data=-1, fsdp=-1), "at most one axis"),
    (sharding.MeshConfig(data=3, fsdp=1, tensor=1), "multiply to 3"),
    (sharding.MeshConfig(data=-1, fsdp=3), "not divisible by 3"),
])
def test_mesh_config_errors_name_the_problem(config, message):
    with pytest.raises(ValueError, match=message):
        config.shape(8)


def test_make_mesh_uses_auto_axes():
    mesh = sharding.make_mesh(sharding.MeshConfig(data=2, fsdp=2, tensor=2))
    assert mesh.axis_names == sharding.MESH_AXES
    assert dict(mesh.shape) == {"data": 2, "fsdp": 2, "tensor": 2}
    assert all(t == jax.sharding.AxisType.Auto for t in mesh.axis_types)


def test_rule_tables_have_one_rule_per_name_and_the_same_names():
    for rules in (sharding.PARAM_RULES, sharding.ACTIVATION_RULES):
        names = [name for name, _ in rules]
        assert len(names) == len(set(names))
    assert {n for n, _ in sharding.PARAM_RULES} == {n for n, _ in sharding.ACTIVATION_RULES}


def test_logical_to_spec_drops_axes_that_do_not_divide():
    mesh = sharding.make_mesh(sharding.MeshConfig(data=2, fsdp=2, tensor=2))
    assert sharding.logical_to_spec(("batch", "length"), shape=(8, 5), mesh=mesh) == P(("data", "fsdp"), None)
    assert sharding.logical_to_spec(("batch", "heads"), shape=(6, 3), mesh=mesh) == P(None, None)
    assert sharding.logical_to_spec(("embed", "mlp"), sharding.PARAM_RULES, (4, 6), mesh) == P("fsdp", "tensor")


def test_constrain_lays_out_inside_jit_and_is_a_noop_without_mesh():
    x = jnp.arange(32.0).reshape(8, 4)
    np.testing.assert_array_equal(sharding.constrain(x, ("batch", None)), x)
    mesh = sharding.make_mesh(sharding.MeshConfig(data=4, fsdp=2, tensor=1))
    with jax.set_mesh(mesh):
        y = jax.jit(lambda a: sharding.constrain(a * 2, ("batch", None)))(x)
    assert y.sharding.is_equivalent_to(jax.NamedSharding(mesh, P(("data", "fsdp"), None)), 2)
    np.testing.assert_array_equal(y, x * 2)


def test_host_to_global_places_the_batch_over_data_axes():
    mesh = sharding.make_mesh(sharding.MeshConfig(data=2, fsdp=4, tensor=1))
    local = np.arange(16 * 3, dtype=np.int32).reshape(16, 3)
    placed = sharding.host_to_global(local, mesh, ("batch", "length"))
    assert placed.shape == (16, 3)
    assert len(placed.addressable_shards) == 8
    np.testing.assert_array_equal(np.asarray(placed), local)
    assert sharding.process_batch_slice(16) == slice(0, 16)


def test_undivided_batches_are_the_ones_host_to_global_replicates():
    mesh = sharding.make_mesh(sharding.MeshConfig(data=2, fsdp=2, tensor=2))  # 4 batch shards
    assert sharding.undivided_batches(mesh, {"a": 8, "b": 6, "c": 12, "d": 2}) == ["b=6", "d=2"]
    for rows, spec in ((8, P(("data", "fsdp"))), (6, P(None))):
        placed = sharding.host_to_global(np.zeros((rows, 3), np.float32), mesh, ("batch", None))
        assert placed.sharding.spec[0] == spec[0]
