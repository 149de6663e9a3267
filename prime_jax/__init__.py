"""prime_jax: PRIME (process reinforcement through implicit rewards) in JAX/Flax NNX."""

import glob
import os

__version__ = "0.1.0"

# libtpu (in the test extra, for ``prime_jax.memory_plan``) is probed by JAX when it starts its backends.
# On a machine without a TPU chip the probe can only fail, and libtpu's host discovery prints errors
# while it does; a one-host description makes it fail quietly. Only libtpu reads these variables; a
# value already set (by the user) is kept, and nothing is set where a TPU chip (PCI vendor 0x1ae0) is
# present. ``import jax`` itself sets ``TPU_SKIP_MDS_QUERY`` on such machines, so that one is no sign of
# a user's own configuration. Backends JAX has already started before this import cannot be quieted
# any more: set ``JAX_PLATFORMS=cpu`` (or these variables) in that script's environment.
_LIBTPU_QUIET = {"TPU_SKIP_MDS_QUERY": "1", "TPU_WORKER_HOSTNAMES": "localhost", "TPU_WORKER_ID": "0",
                 "TPU_HOST_BOUNDS": "1,1,1",
                 "TPU_MIN_LOG_LEVEL": "3", "TPU_STDERR_LOG_LEVEL": "3"}


def _has_tpu_chip() -> bool:
    for path in glob.glob("/sys/bus/pci/devices/*/vendor"):
        try:
            with open(path) as f:
                if f.read().strip() == "0x1ae0":
                    return True
        except OSError:
            continue
    return False


if not _has_tpu_chip():
    for _name, _value in _LIBTPU_QUIET.items():
        os.environ.setdefault(_name, _value)
