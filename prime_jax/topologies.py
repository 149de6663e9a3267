"""Compile-only devices of an accelerator topology, described on any host: ``devices(name)``.

XLA compiles for these devices as it would on the hardware (layouts, fusions, Pallas kernels,
memory assignment) with none attached; ``prime_jax.memory_plan`` and the kernel lowering tests use
them. A name is ``KIND:SHAPE``:

* TPU ``v5e:2x4``, ``v5p:4x4x4``, ... (``TPU_HBM_GIB`` lists the generations): libtpu's description
  (``jax.experimental.topologies``); v4 and v5p as megacore, one device per chip as JAX runs them.
* NVIDIA GPU ``h100:8`` (8 GPUs on one host) or ``h100:2x8`` (2 hosts of 8), models in ``GPUS``:
  the CUDA plugin (``jax[cuda12-local]``, in the test extra) describes them from a target
  description written from the card's published figures (``Gpu.target_config``), so XLA's GPU
  compiler (Triton for the Pallas kernels, cuDNN's custom calls) runs without a GPU or a driver.
  cuDNN's attention also needs the cuDNN library itself (``nvidia-cudnn-cu12``).

``memory_per_device(name)``: the bytes a device offers the programs: a TPU chip's HBM; a GPU's
memory times the fraction JAX's allocator takes of it at start-up (``XLA_PYTHON_CLIENT_MEM_FRACTION``,
default 0.75). libtpu's host discovery is quietened through its environment variables
(``LIBTPU_ENV``), set when this module is imported.
"""

from __future__ import annotations

import dataclasses
import os

TPU_HBM_GIB = {"v4": 32.0, "v5e": 16.0, "v5p": 95.0, "v6e": 32.0}  # HBM per chip, GiB
MEGACORE = ("v4", "v5p")  # two TensorCores per chip, one JAX device (chip_config_name="megacore")
WORKING_TPU_TOPOLOGIES = ("v5e:2x2", "v5e:2x4", "v5e:4x4", "v6e:2x2", "v6e:2x4", "v4:2x2x1", "v4:2x2x2",
                          "v4:4x4x4", "v5p:2x2x1", "v5p:2x2x4", "v5p:4x4x4")
LIBTPU_ENV = {  # no metadata server, no worker discovery, no log spam (checked with libtpu 0.0.42.1)
    "TPU_SKIP_MDS_QUERY": "1", "TPU_WORKER_HOSTNAMES": "localhost", "TPU_WORKER_ID": "0",
    "TPU_HOST_BOUNDS": "1,1,1", "TPU_MIN_LOG_LEVEL": "3", "TPU_STDERR_LOG_LEVEL": "3",
    "GRPC_VERBOSITY": "ERROR",
    "ALLOW_MULTIPLE_LIBTPU_LOAD": "1",  # another jax process may hold /tmp/libtpu_lockfile
}
JAX_GPU_MEMORY_FRACTION = 0.75  # JAX preallocates this fraction of a GPU's memory unless told otherwise
KIB, MIB, GIB = 1024, 1024 ** 2, 1024 ** 3

for _name, _value in LIBTPU_ENV.items():  # before libtpu is loaded (it reads them once)
    os.environ.setdefault(_name, _value)


class TopologyError(ValueError):
    """A topology name nothing here can describe; the message says why and what works."""


@dataclasses.dataclass(frozen=True)
class Gpu:
    """An NVIDIA data-centre GPU as XLA's GPU compiler needs to know it (published figures)."""

    name: str  # the device kind CUDA reports
    compute_capability: tuple[int, int]
    sms: int
    fp32_lanes_per_sm: int
    memory_bytes: int  # what nvidia-smi reports as the total
    memory_bandwidth: float  # bytes / s
    l2_bytes: int
    clock_ghz: float
    shared_per_sm: int
    shared_per_block_optin: int

    def target_config(self) -> str:
        """The ``GpuTargetConfigProto`` text the CUDA plugin compiles for (cuDNN 9.8: JAX's minimum)."""
        major, minor = self.compute_capability
        info = {"threads_per_block_limit": 1024, "threads_per_warp": 32, "shared_memory_per_block": 48 * KIB,
                "shared_memory_per_block_optin": self.shared_per_block_optin,
                "shared_memory_per_core": self.shared_per_sm, "threads_per_core_limit": 2048,
                "core_count": self.sms, "fpus_per_core": self.fp32_lanes_per_sm,
                "block_dim_limit_x": 2 ** 31 - 1, "block_dim_limit_y": 65535, "block_dim_limit_z": 65535,
                "memory_bandwidth": int(self.memory_bandwidth), "l2_cache_size": self.l2_bytes,
                "clock_rate_ghz": self.clock_ghz, "device_memory_size": self.memory_bytes}
        fields = "".join(f"  {key}: {value}\n" for key, value in info.items())
        return (f"gpu_device_info {{\n  cuda_compute_capability {{ major: {major} minor: {minor} }}\n{fields}}}\n"
                f'platform_name: "CUDA"\ndnn_version_info {{ major: 9 minor: 8 patch: 0 }}\n'
                f'device_description_str: "{self.name}"\n')


GPUS = {
    "a100": Gpu("NVIDIA A100-SXM4-80GB", (8, 0), sms=108, fp32_lanes_per_sm=64, memory_bytes=81920 * MIB,
                memory_bandwidth=2.039e12, l2_bytes=40 * MIB, clock_ghz=1.41, shared_per_sm=164 * KIB,
                shared_per_block_optin=163 * KIB),
    "h100": Gpu("NVIDIA H100 80GB HBM3", (9, 0), sms=132, fp32_lanes_per_sm=128, memory_bytes=81559 * MIB,
                memory_bandwidth=3.35e12, l2_bytes=50 * MIB, clock_ghz=1.98, shared_per_sm=228 * KIB,
                shared_per_block_optin=227 * KIB),
    "h200": Gpu("NVIDIA H200", (9, 0), sms=132, fp32_lanes_per_sm=128, memory_bytes=143771 * MIB,
                memory_bandwidth=4.8e12, l2_bytes=50 * MIB, clock_ghz=1.98, shared_per_sm=228 * KIB,
                shared_per_block_optin=227 * KIB),
}
EXAMPLES = ("v5e:2x4", "v5p:4x4x4", "h100:8", "h100:2x8")


def _split(name: str) -> tuple[str, str]:
    kind, _, shape = name.partition(":")
    if kind not in TPU_HBM_GIB and kind not in GPUS or not shape:
        raise TopologyError(f"topology {name!r}: expected KIND:SHAPE with KIND one of "
                            f"{sorted(TPU_HBM_GIB) + sorted(GPUS)}, e.g. {', '.join(EXAMPLES)}")
    return kind, shape


def _gpu_hosts_and_count(name: str, shape: str) -> tuple[int, int]:
    parts = shape.split("x")
    if len(parts) > 2 or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise TopologyError(f"topology {name!r}: a GPU shape is COUNT (one host) or HOSTSxCOUNT, e.g. h100:8")
    return (1, int(parts[0])) if len(parts) == 1 else (int(parts[0]), int(parts[1]))


def devices(name: str) -> list:
    """The compile-only devices of topology ``name`` (module docstring)."""
    from jax.experimental import topologies

    kind, shape = _split(name)
    if kind in TPU_HBM_GIB:
        extra = {"chip_config_name": "megacore"} if kind in MEGACORE else {}
        try:
            return list(topologies.get_topology_desc(platform="tpu", topology_name=name, **extra).devices)
        except Exception as error:  # noqa: BLE001 - libtpu raises JaxRuntimeError / RuntimeError
            raise TopologyError(f"topology {name!r}: libtpu does not describe it ({error}); topologies that "
                                f"work: {', '.join(WORKING_TPU_TOPOLOGIES)}") from error
    hosts, count = _gpu_hosts_and_count(name, shape)
    try:
        description = topologies.get_topology_desc(platform="cuda", topology=f"1x{hosts}x{count}",
                                                    target_config=GPUS[kind].target_config())
    except NotImplementedError as error:  # jax without the CUDA plugin registered
        raise TopologyError(
            f"topology {name!r}: JAX has no CUDA plugin to describe GPUs ({error}); install it with "
            "pip install 'jax[cuda12-local]' nvidia-cudnn-cu12 nvidia-cuda-runtime-cu12 (the test extra "
            "has them), and on a machine with NVIDIA GPUs set JAX_SKIP_CUDA_CONSTRAINTS_CHECK=1 if the "
            "installed CUDA does not suit them") from error
    return list(description.devices)


def memory_per_device(name: str) -> int:
    """Bytes a device of topology ``name`` offers (module docstring)."""
    kind, _ = _split(name)
    if kind in TPU_HBM_GIB:
        return int(TPU_HBM_GIB[kind] * GIB)
    return int(GPUS[kind].memory_bytes * gpu_memory_fraction())


def gpu_memory_fraction() -> float:
    """The fraction of a GPU's memory JAX's allocator takes: ``XLA_PYTHON_CLIENT_MEM_FRACTION``."""
    value = os.environ.get("XLA_PYTHON_CLIENT_MEM_FRACTION", str(JAX_GPU_MEMORY_FRACTION))
    try:
        fraction = float(value)
    except ValueError:
        fraction = -1.0
    if not 0 < fraction <= 1:
        raise TopologyError(f"XLA_PYTHON_CLIENT_MEM_FRACTION={value!r}: expected a number in (0, 1]")
    return fraction
