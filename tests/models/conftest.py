"""Fixtures for tests/models; helpers live in _model_helpers.py (made importable here)."""

import pathlib
import sys

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).parent))

from _model_helpers import FAMILIES, make_hf_model  # noqa: E402


@pytest.fixture(scope="session")
def hf_checkpoints(tmp_path_factory):
    """{(family, tie): (hf_model, directory written by transformers.save_pretrained)}."""
    out = {}
    for family, tie in FAMILIES:
        model = make_hf_model(family, tie=tie)
        directory = tmp_path_factory.mktemp(f"{family}_{'tied' if tie else 'untied'}")
        model.save_pretrained(directory)
        out[(family, tie)] = (model, directory)
    return out
