"""Quiet, accelerator-free TensorFlow import (only seqio-facing modules call this).

TF is used here for tf.data inside seqio only: its C++ logging is silenced before import, and it
is hidden from GPUs/TPUs so it never grabs accelerator memory that JAX needs.
"""

from __future__ import annotations

import logging
import os

_CONFIGURED = False


def import_tf():
    """Imports and returns `tensorflow`, configured once (quiet, CPU only)."""
    global _CONFIGURED
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
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
