"""prime_jax: PRIME (process reinforcement through implicit rewards) in JAX/Flax NNX."""

import glob
import os

__version__ = "0.1.0"

# The test extra installs two compilers for accelerators this machine may not have: libtpu and the
# CUDA plugin (``jax[cuda12-local]``), for the ahead-of-time plans of ``prime_jax.topologies``. JAX
# probes both when it starts its backends; on a machine without the chip the probe can only fail, and
# each reports it loudly. Only the plugin in question reads these variables; a value already set (by
# the user) is kept, and nothing is set where the chip is present.
# * libtpu's host discovery prints errors; a one-host description makes it fail quietly (where no
#   TPU chip, PCI vendor 0x1ae0, is present). ``import jax`` itself sets ``TPU_SKIP_MDS_QUERY`` on
#   such machines, so that one is no sign of a user's own configuration.
# * the CUDA plugin checks the CUDA libraries against the GPUs and prints a traceback when it finds
#   no driver; without an NVIDIA GPU (PCI vendor 0x10de, or /dev/nvidiactl) there is nothing to check,
#   and skipping the check also keeps the plugin registered, so XLA can compile for a described GPU.
# Backends JAX has already started before this import cannot be quieted any more: set
# ``JAX_PLATFORMS=cpu`` (or these variables) in that script's environment.
_LIBTPU_QUIET = {"TPU_SKIP_MDS_QUERY": "1", "TPU_WORKER_HOSTNAMES": "localhost", "TPU_WORKER_ID": "0",
                 "TPU_HOST_BOUNDS": "1,1,1",
                 "TPU_MIN_LOG_LEVEL": "3", "TPU_STDERR_LOG_LEVEL": "3"}


def _pci_vendors() -> set[str]:
    """The PCI vendor ids present (one read of sysfs at import)."""
    vendors = set()
    for path in glob.glob("/sys/bus/pci/devices/*/vendor"):
        try:
            with open(path) as f:
                vendors.add(f.read().strip())
        except OSError:
            continue
    return vendors


_VENDORS = _pci_vendors()
if "0x1ae0" not in _VENDORS:
    for _name, _value in _LIBTPU_QUIET.items():
        os.environ.setdefault(_name, _value)
if "0x10de" not in _VENDORS and not os.path.exists("/dev/nvidiactl"):
    os.environ.setdefault("JAX_SKIP_CUDA_CONSTRAINTS_CHECK", "1")
