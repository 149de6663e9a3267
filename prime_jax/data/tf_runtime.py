"""Quiet, accelerator-free TensorFlow import (only seqio-facing modules call this).

TF is used here for tf.data inside seqio only: its C++ logging (the CUDA-driver probe, oneDNN
notices) is silenced before import, and it is hidden from GPUs/TPUs so it never grabs accelerator
memory that JAX needs. Modules that import seqio call ``import_tf`` first: seqio imports TF.
"""

from __future__ import annotations

import contextlib
import logging
import os

_CONFIGURED = False


@contextlib.contextmanager
def _native_stderr_silenced():
    """File descriptor 2 points at /dev/null inside the block: TF's native code logs its CUDA
    probe through absl before any log level applies. Python exceptions still propagate."""
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def import_tf():
    """Imports and returns `tensorflow`, configured once (quiet, CPU only)."""
    global _CONFIGURED
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    with _native_stderr_silenced():  # the import and the device query both probe CUDA
        import tensorflow as tf

        if not _CONFIGURED:
            logging.getLogger("tensorflow").setLevel(logging.ERROR)
            try:
                for kind in ("GPU", "TPU"):
                    tf.config.set_visible_devices([], kind)
            except (RuntimeError, ValueError):  # devices already initialised, or kind unknown
                pass
            _CONFIGURED = True
    return tf
