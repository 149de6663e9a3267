"""``prime_jax.topologies``: names it refuses say why and what works; GPU memory follows JAX's
allocator fraction; without the CUDA plugin the error says how to install it."""

import pytest
from jax.experimental import topologies as jax_topologies

from prime_jax import topologies


@pytest.mark.parametrize("name, message", [
    ("b200:8", "KIND one of"), ("h100", "KIND one of"), ("v9:2x2", "KIND one of"),
    ("h100:0", "COUNT .one host. or HOSTSxCOUNT"), ("h100:2x2x2", "COUNT .one host. or HOSTSxCOUNT"),
    ("h100:eight", "COUNT .one host. or HOSTSxCOUNT"),
])
def test_bad_names_are_refused_with_what_works(name, message):
    with pytest.raises(topologies.TopologyError, match=f"'{name}'.*{message}"):
        topologies.devices(name)


def test_gpu_memory_is_jaxs_share_of_the_card(monkeypatch):
    card = topologies.GPUS["h100"].memory_bytes
    monkeypatch.delenv("XLA_PYTHON_CLIENT_MEM_FRACTION", raising=False)
    assert topologies.memory_per_device("h100:8") == int(card * 0.75)
    monkeypatch.setenv("XLA_PYTHON_CLIENT_MEM_FRACTION", "0.9")
    assert topologies.memory_per_device("h100:8") == int(card * 0.9)
    assert topologies.memory_per_device("v5e:2x4") == 16 * topologies.GIB  # a TPU chip's HBM, no fraction
    for bad in ("1.5", "0", "most"):
        monkeypatch.setenv("XLA_PYTHON_CLIENT_MEM_FRACTION", bad)
        with pytest.raises(topologies.TopologyError, match=f"XLA_PYTHON_CLIENT_MEM_FRACTION='{bad}'"):
            topologies.memory_per_device("h100:8")


def test_without_the_cuda_plugin_the_error_says_how_to_install_it(monkeypatch):
    def unregistered(*args, **kwargs):  # what JAX raises when no CUDA plugin is registered
        raise NotImplementedError("topology not implemented for cuda")

    monkeypatch.setattr(jax_topologies, "get_topology_desc", unregistered)
    with pytest.raises(topologies.TopologyError, match=r"'h100:8'.*no CUDA plugin.*jax\[cuda12-local\]"):
        topologies.devices("h100:8")


def test_the_target_description_names_the_card():
    text = topologies.GPUS["a100"].target_config()
    assert "cuda_compute_capability { major: 8 minor: 0 }" in text and "core_count: 108" in text
    assert 'device_description_str: "NVIDIA A100-SXM4-80GB"' in text
