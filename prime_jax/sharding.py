"""The one place that knows the device mesh.

Three mesh axes, ``MESH_AXES = (data, fsdp, tensor)``:

* ``data``   - pure data parallelism (weights replicated);
* ``fsdp``   - data parallelism with weights sharded along their ``embed`` dim;
* ``tensor`` - Megatron-style tensor parallelism over heads, mlp and vocab.

Code everywhere else speaks in *logical* axis names. Two rule tables map the
same logical names to mesh axes, one for stored weights and one for
activations; each table has exactly one rule per name because NNX applies the
rules as a rename map.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping, Sequence

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

MESH_AXES = ("data", "fsdp", "tensor")
BATCH_AXES = ("data", "fsdp")

Rules = tuple[tuple[str, str | tuple[str, ...] | None], ...]

# How weights are stored.
PARAM_RULES: Rules = (
    ("batch", None),
    ("length", None),
    ("embed", "fsdp"),
    ("vocab", "tensor"),
    ("mlp", "tensor"),
    ("heads", "tensor"),
    ("kv_heads", "tensor"),
    ("head_dim", None),
    ("norm", None),
)

# How activations are laid out: same names, batch spread over every data axis.
ACTIVATION_RULES: Rules = (
    ("batch", BATCH_AXES),
    ("length", None),
    ("embed", None),
    ("vocab", "tensor"),
    ("mlp", "tensor"),
    ("heads", "tensor"),
    ("kv_heads", "tensor"),
    ("head_dim", None),
    ("norm", None),
)


@dataclasses.dataclass(frozen=True, kw_only=True)
class MeshConfig:
    """Sizes of the (data, fsdp, tensor) axes; one of them may be -1 = the rest."""

    data: int = -1
    fsdp: int = 1
    tensor: int = 1

    def shape(self, num_devices: int) -> tuple[int, int, int]:
        sizes = [self.data, self.fsdp, self.tensor]
        if sizes.count(-1) > 1:
            raise ValueError(f"MeshConfig: at most one axis may be -1, got {self}")
        known = math.prod(s for s in sizes if s != -1)
        if any(s == 0 or s < -1 for s in sizes):
            raise ValueError(f"MeshConfig: axis sizes must be positive or -1, got {self}")
        if -1 in sizes:
            if num_devices % known:
                raise ValueError(
                    f"MeshConfig {self}: {num_devices} devices are not divisible by {known}")
            sizes[sizes.index(-1)] = num_devices // known
        if math.prod(sizes) != num_devices:
            raise ValueError(
                f"MeshConfig {self}: axis sizes multiply to {math.prod(sizes)}, "
                f"but there are {num_devices} devices")
        return tuple(sizes)


def make_mesh(config: MeshConfig | None = None, devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A (data, fsdp, tensor) mesh with Auto axis types over ``devices`` (default: all)."""
    config = config or MeshConfig()
    devices = list(devices) if devices is not None else jax.devices()
    shape = config.shape(len(devices))
    if devices == jax.devices():
        return jax.make_mesh(shape, MESH_AXES, axis_types=(AxisType.Auto,) * 3)
    return Mesh(np.asarray(devices).reshape(shape), MESH_AXES, axis_types=(AxisType.Auto,) * 3)


def logical_to_spec(logical_axes: Sequence[str | None], rules: Rules = ACTIVATION_RULES,
                    shape: Sequence[int] | None = None, mesh: Mesh | None = None) -> PartitionSpec:
    """PartitionSpec for logical axis names under ``rules``.

    When ``shape`` and ``mesh`` are given, a mesh axis that does not divide its
    dimension is dropped (that dimension is replicated instead of failing).
    """
    table = dict(rules)
    spec = []
    for i, name in enumerate(logical_axes):
        axes = table.get(name) if name is not None else None
        if axes is not None and shape is not None and mesh is not None:
            group = (axes,) if isinstance(axes, str) else tuple(axes)
            group = tuple(a for a in group if mesh.shape[a] > 1)
            if math.prod(mesh.shape[a] for a in group) == 1 or shape[i] % math.prod(
                    mesh.shape[a] for a in group):
                axes = None
            else:
                axes = group[0] if len(group) == 1 else group
        spec.append(axes)
    return PartitionSpec(*spec)


def named_sharding(mesh: Mesh, logical_axes: Sequence[str | None], shape: Sequence[int] | None = None,
                   rules: Rules = ACTIVATION_RULES) -> NamedSharding:
    """NamedSharding of an array laid out with ``logical_axes`` on ``mesh``."""
    return NamedSharding(mesh, logical_to_spec(logical_axes, rules, shape, mesh))


def constrain(x: jax.Array, logical_axes: Sequence[str | None]) -> jax.Array:
    """Lay out activation ``x`` by its logical axes on the current mesh (no-op without one)."""
    mesh = jax.sharding.get_abstract_mesh()
    if mesh.empty or mesh.size == 1:
        return x
    spec = logical_to_spec(logical_axes, ACTIVATION_RULES, x.shape, mesh)
    return jax.lax.with_sharding_constraint(x, spec)


def data_parallel_size(mesh: Mesh) -> int:
    """Number of batch shards: the product of the data and fsdp axes."""
    return mesh.shape["data"] * mesh.shape["fsdp"]


def undivided_batches(mesh: Mesh, rows_by_name: Mapping[str, int]) -> list[str]:
    """``"name=rows"`` for each batch whose rows the mesh's batch shards (data x fsdp) do not divide.

    Such a batch is laid out replicated (``logical_to_spec`` drops the axis that does not divide),
    so every shard computes all of its rows: correct, and as slow as one device or slower.
    """
    shards = data_parallel_size(mesh)
    return [f"{name}={rows}" for name, rows in rows_by_name.items() if rows % shards]


def maybe_initialize_distributed() -> bool:
    """Start ``jax.distributed`` when launched as several processes.

    Reads ``JAX_COORDINATOR_ADDRESS``, ``JAX_NUM_PROCESSES`` and
    ``JAX_PROCESS_ID``. On CPU the collectives go through gloo. Returns True if
    it initialised.
    """
    num = int(os.environ.get("JAX_NUM_PROCESSES", "1"))
    if num <= 1 or jax.distributed.is_initialized():
        return False
    if os.environ.get("JAX_PLATFORMS", "") == "cpu":
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(
        coordinator_address=os.environ["JAX_COORDINATOR_ADDRESS"],
        num_processes=num,
        process_id=int(os.environ["JAX_PROCESS_ID"]),
    )
    return True


def process_batch_slice(global_batch: int) -> slice:
    """Rows of a global batch that this process feeds (contiguous, equal shares)."""
    count, index = jax.process_count(), jax.process_index()
    if global_batch % count:
        raise ValueError(f"global batch {global_batch} is not divisible by {count} processes")
    share = global_batch // count
    return slice(index * share, (index + 1) * share)


def host_to_global(local: np.ndarray, mesh: Mesh, logical_axes: Sequence[str | None]) -> jax.Array:
    """Place this process's rows of a batch on the global mesh.

    The ``"batch"`` axis of ``logical_axes`` holds this process's contiguous share
    (``process_batch_slice``); the global array has ``process_count`` times as
    many rows. With one process this is a sharded ``device_put``.
    """
    axis = list(logical_axes).index("batch")
    global_shape = list(local.shape)
    global_shape[axis] *= jax.process_count()
    sharding = named_sharding(mesh, logical_axes, global_shape)
    if jax.process_count() == 1:
        return jax.device_put(local, sharding)
    return jax.make_array_from_process_local_data(sharding, np.asarray(local), tuple(global_shape))


def global_to_host(x: jax.Array, mesh: Mesh, logical_axes: Sequence[str | None]) -> np.ndarray:
    """This process's rows of a global batch array (the inverse of ``host_to_global``)."""
    if jax.process_count() == 1:
        return np.asarray(x)
    from jax.experimental import multihost_utils

    spec = logical_to_spec(logical_axes, ACTIVATION_RULES, x.shape, mesh)
    return np.asarray(multihost_utils.global_array_to_host_local_array(x, mesh, spec))


def local_rows(global_rows: int) -> int:
    """This process's share of a global count of rows."""
    return global_rows // jax.process_count()


def place(tree, mesh: Mesh, *, micro: int | None = None):
    """This process's host rows -> global arrays, rows over (data, fsdp): the one host -> mesh
    boundary for batches. With ``micro``, rows are first split into a leading micro-batch axis
    (B, ...) -> (micro, B / micro, ...)."""
    def put(x):
        x = np.asarray(x)
        if micro is None:
            return host_to_global(x, mesh, ("batch",) + (None,) * (x.ndim - 1))
        if x.shape[0] % micro:
            raise ValueError(f"a batch of {x.shape[0]} rows does not split into {micro} micro-batches")
        x = x.reshape((micro, x.shape[0] // micro) + x.shape[1:])
        return host_to_global(x, mesh, (None, "batch") + (None,) * (x.ndim - 2))
    return jax.tree.map(put, tree)


def fetch(tree, mesh: Mesh):
    """Global row arrays -> this process's rows on the host (the inverse of ``place``)."""
    return jax.tree.map(lambda x: global_to_host(x, mesh, ("batch",) + (None,) * (x.ndim - 1)), tree)


def all_processes(values: np.ndarray) -> np.ndarray:
    """``values`` of every process stacked on a new leading axis (identity with one process)."""
    values = np.asarray(values)
    if jax.process_count() == 1:
        return values[None]
    from jax.experimental import multihost_utils

    return np.asarray(multihost_utils.process_allgather(values))


def replicate_unsharded(tree, mesh: Mesh):
    """Give every array leaf without a mesh sharding (optimizer counts, step, RNG) a
    replicated one on ``mesh``, so jitted steps and checkpoint restores see one mesh."""
    replicated = NamedSharding(mesh, PartitionSpec())

    def place(x):
        if isinstance(x, jax.Array) and not (isinstance(x.sharding, NamedSharding) and x.sharding.mesh == mesh):
            return jax.device_put(x, replicated)
        return x
    return jax.tree.map(place, tree)
