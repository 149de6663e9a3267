"""Orbax checkpoints of a run: array state + JSON metadata, verified on restore.

Layout: ``<workdir>/checkpoints/<step>/{state,meta}``. Orbax writes each step
into a temporary folder and renames it when complete, so an interrupted save
never replaces the previous checkpoint. Every save also records a fingerprint
of each array, ``(sum x, sum x^2)`` of its values cast to float32 (compared with relative
tolerance 1e-5, so a sharded restore that sums in another order still matches); a restore
whose arrays do not reproduce it (a damaged file) is refused with
``CheckpointError`` naming the step and the leaf, never used silently.
"""

from __future__ import annotations

import pathlib
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be trusted or found."""


def _fingerprint(tree: Any) -> dict[str, list[float]]:
    """``{leaf path: [sum x, sum x^2]}`` for every array leaf, summed in float32 on its devices."""
    out = {}
    for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
        if leaf is None or not hasattr(leaf, "shape"):
            continue
        if jnp.issubdtype(leaf.dtype, jax.dtypes.prng_key):
            leaf = jax.random.key_data(leaf)
        x = jnp.asarray(leaf).astype(jnp.float32)
        out[_path_name(path)] = [float(jnp.sum(x)), float(jnp.sum(x * x))]
    return out


def _path_name(path) -> str:
    """``a/b/0/kernel``: the same name for a typed pytree and its raw nested-dict restore."""
    parts = []
    for key in path:
        for attr in ("key", "idx", "name"):
            if hasattr(key, attr):
                parts.append(str(getattr(key, attr)))
                break
        else:
            parts.append(str(key))
    return "/".join(parts)


def _same(a: list[float], b: list[float]) -> bool:
    return all(np.isclose(x, y, rtol=1e-5, atol=1e-6) for x, y in zip(a, b))


class Checkpointer:
    """Save and restore ``(state pytree, metadata dict)`` pairs by step; ``with Checkpointer(d) as c``
    closes the orbax manager (and its background threads) however the block ends."""

    def __init__(self, directory: str | pathlib.Path, *, max_to_keep: int = 3):
        self.directory = pathlib.Path(directory).absolute()
        self._manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True),
            item_names=("state", "meta"),
        )

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def all_steps(self) -> list[int]:
        return list(self._manager.all_steps())

    def save(self, step: int, state: Any, meta: dict) -> None:
        """Write step ``step``; blocks until it is complete on disk."""
        meta = {**meta, "fingerprint": _fingerprint(state)}
        self._manager.save(step, args=ocp.args.Composite(
            state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)), force=True)
        self._manager.wait_until_finished()

    def restore(self, abstract_state: Any, step: int | None = None) -> tuple[Any, dict]:
        """Restore ``step`` (default: latest) into the structure/shardings of ``abstract_state``."""
        step = self.latest_step() if step is None else step
        if step is None or step not in self.all_steps():
            raise CheckpointError(
                f"no checkpoint for step {step} in {self.directory} (have {self.all_steps()})")
        target = jax.tree.map(ocp.utils.to_shape_dtype_struct, abstract_state)
        try:
            restored = self._manager.restore(step, args=ocp.args.Composite(
                state=ocp.args.StandardRestore(target), meta=ocp.args.JsonRestore()))
        except Exception as error:  # orbax/tensorstore raise many types for damaged files
            raise CheckpointError(
                f"checkpoint {self.directory / str(step)} is damaged or incompatible and was "
                f"refused: {type(error).__name__}: {error}") from error
        state, meta = restored["state"], dict(restored["meta"])
        self._verify(step, state, meta.pop("fingerprint", None))
        return state, meta

    def restore_raw(self, step: int | None = None) -> tuple[dict, dict]:
        """Restore without a target structure: nested dicts of host arrays, verified likewise."""
        step = self.latest_step() if step is None else step
        if step is None or step not in self.all_steps():
            raise CheckpointError(
                f"no checkpoint for step {step} in {self.directory} (have {self.all_steps()})")
        try:
            restored = self._manager.restore(step, args=ocp.args.Composite(
                state=ocp.args.StandardRestore(), meta=ocp.args.JsonRestore()))
        except Exception as error:
            raise CheckpointError(f"checkpoint {self.directory / str(step)} is damaged or unreadable "
                                  f"and was refused: {type(error).__name__}: {error}") from error
        meta = dict(restored["meta"])
        self._verify(step, restored["state"], meta.pop("fingerprint", None))
        return restored["state"], meta

    def _verify(self, step: int, state: Any, expected: dict | None) -> None:
        if expected is None:
            raise CheckpointError(f"checkpoint {self.directory / str(step)} has no fingerprint; refused")
        actual = _fingerprint(state)
        for name, value in expected.items():
            if name not in actual or not _same(value, actual[name]):
                raise CheckpointError(
                    f"checkpoint {self.directory / str(step)} is damaged: array {name} does not "
                    f"match its saved fingerprint (saved {value}, read {actual.get(name)}); refused")

    def close(self) -> None:
        self._manager.close()

    def __enter__(self) -> "Checkpointer":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()
