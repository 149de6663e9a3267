"""A resumable, seeded, infinite index stream with per-process slicing.

The stream is the concatenation of epochs; epoch `e` visits `permutation(n)` drawn from
`np.random.default_rng([seed, e])` (or `range(n)` without shuffling). The whole state is one
integer, the global position, so `state()`/`restore()` are exact and tiny. Every process runs the
same global stream; `take(k)` advances it by `k * process_count` and returns this process's
contiguous slice `[process_index * k, (process_index + 1) * k)`, so the shards of one step are
disjoint, cover the global batch, and the global batch does not depend on the process count.
"""

from __future__ import annotations

import numpy as np


class EpochSampler:
    def __init__(self, num_items: int, *, seed: int = 0, shuffle: bool = True,
                 process_index: int = 0, process_count: int = 1):
        if num_items <= 0:
            raise ValueError("cannot sample from an empty data set")
        if not 0 <= process_index < process_count:
            raise ValueError(f"process_index {process_index} not in [0, {process_count})")
        self.num_items = num_items
        self.seed = int(seed)
        self.shuffle = shuffle
        self.process_index = process_index
        self.process_count = process_count
        self.position = 0
        self._cache: dict[int, np.ndarray] = {}

    def _order(self, epoch: int) -> np.ndarray:
        if epoch not in self._cache:
            if len(self._cache) > 2:
                self._cache.clear()
            if self.shuffle:
                order = np.random.default_rng([self.seed, epoch]).permutation(self.num_items)
            else:
                order = np.arange(self.num_items)
            self._cache[epoch] = order
        return self._cache[epoch]

    def indices_at(self, start: int, count: int) -> np.ndarray:
        """Item indices at global positions [start, start + count) (no state change)."""
        positions = np.arange(start, start + count, dtype=np.int64)
        epochs, offsets = np.divmod(positions, self.num_items)
        out = np.empty(count, np.int64)
        for epoch in np.unique(epochs):
            hit = epochs == epoch
            out[hit] = self._order(int(epoch))[offsets[hit]]
        return out

    def take(self, count: int) -> np.ndarray:
        """This process's `count` indices of the next global step; advances the stream."""
        start = self.position + self.process_index * count
        self.position += count * self.process_count
        return self.indices_at(start, count)

    @property
    def epoch(self) -> int:
        return self.position // self.num_items

    def state(self) -> dict:
        return {"position": self.position, "seed": self.seed, "num_items": self.num_items,
                "shuffle": self.shuffle}

    def restore(self, state: dict) -> None:
        """Continues from a saved position (the process count may differ: positions are global)."""
        for key in ("seed", "num_items", "shuffle"):
            if state[key] != getattr(self, key):
                raise ValueError(f"cannot restore: {key} is {getattr(self, key)!r} here but "
                                 f"{state[key]!r} in the saved state")
        self.position = int(state["position"])


class SamplerBacked:
    """Resumability for a stream that draws its indices from ``self.sampler`` (an EpochSampler):
    its whole state is the sampler's."""

    sampler: EpochSampler

    def state(self) -> dict:
        """A small JSON-able dict; ``restore(state)`` continues exactly from here."""
        return self.sampler.state()

    def restore(self, state: dict) -> None:
        self.sampler.restore(state)

    @property
    def epoch(self) -> int:
        return self.sampler.epoch
