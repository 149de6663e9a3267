"""prime_jax: PRIME (process reinforcement through implicit rewards) in JAX/Flax NNX."""

__version__ = "0.1.0"
