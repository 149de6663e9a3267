"""Installs prime_jax: `pip install -e .[test]` (CPU), `.[gpu]`, `.[tpu]`, `.[docs]` (the site)."""

import glob

from setuptools import find_packages, setup

# The documentation site (mkdocs.yml): `pip install -e .[docs]`, then `mkdocs serve` or `mkdocs build --strict`.
DOCS = ["mkdocs>=1.6.1,<2", "mkdocs-material>=9.8,<10", "mkdocstrings>=1.0,<2", "mkdocstrings-python>=2.0,<3"]

setup(
    name="prime_jax",
    version="0.1.0",
    description="PRIME: process reinforcement through implicit rewards, in JAX/Flax NNX",
    python_requires=">=3.11",
    packages=find_packages(include=["prime_jax", "prime_jax.*"]),
    package_data={"prime_jax": ["assets/**/*", "assets/*"]},
    data_files=[("share/prime_jax/configs", glob.glob("configs/*.gin"))],
    install_requires=[
        "jax>=0.6,<0.13",
        "flax>=0.11,<0.14",
        "optax>=0.2.4,<0.3",
        "orbax-checkpoint>=0.11,<0.13",
        "gin-config>=0.5,<0.6",
        "seqio>=0.0.19",
        "transformers>=4.50,<6",
        "tokenizers>=0.20",
        "safetensors>=0.4",
        "numpy>=1.26",
        "sympy>=1.12",
        "math-verify>=0.7",
        "latex2sympy2-extended>=1.0",
        "pyarrow>=14",
        "tqdm>=4.60",
        "matplotlib>=3.8",
        "tensorboard>=2.15",
        "clu>=0.0.10",
    ],
    extras_require={
        "test": ["pytest>=8", "hypothesis>=6.100", "pytest-xdist>=3.5", "torch>=2.4",
                 "nbclient>=0.10", "nbformat>=5.9", "ipykernel>=6.29",
                 # TPU compiler for the ahead-of-time memory plans (prime_jax.memory_plan); no TPU needed
                 "libtpu==0.0.42.1",
                 # CUDA compiler (XLA's GPU backend, Triton) and cuDNN for the GPU plans and kernel
                 # lowering tests (prime_jax.topologies); no GPU or driver needed
                 "jax[cuda12-local]", "nvidia-cudnn-cu12>=9.8,<10", "nvidia-cuda-runtime-cu12",
                 # tests/test_docs.py builds the documentation site with --strict
                 *DOCS],
        "docs": DOCS,
        "gpu": ["jax[cuda12]>=0.6,<0.13"],
        "tpu": ["jax[tpu]>=0.6,<0.13"],
    },
    entry_points={"console_scripts": [
        "prime-jax-train=prime_jax.train:main",
        "prime-jax-export=prime_jax.export:main",
        "prime-jax-evaluate=prime_jax.evaluate:main",
    ]},
)
