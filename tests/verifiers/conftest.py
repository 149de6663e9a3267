"""The ``backend`` fixture: every sandbox backend that works on this machine (others skip with
the reason ``sandbox.resolve`` gives)."""

import pytest

from prime_jax.verifiers import sandbox


@pytest.fixture(params=sandbox.BACKENDS, scope="module")
def backend(request):
    try:
        sandbox.resolve(request.param)
    except sandbox.SandboxUnavailable as error:
        pytest.skip(str(error))
    return request.param
