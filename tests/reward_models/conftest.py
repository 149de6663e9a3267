"""Every reward-model test starts and ends with an empty gin configuration."""

import gin
import pytest


@pytest.fixture(autouse=True)
def clean_gin():
    gin.clear_config()
    yield
    gin.clear_config()
