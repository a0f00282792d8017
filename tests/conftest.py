"""Shared pytest fixtures."""

from pathlib import Path

import pytest

# Golden files written by BVLC Caffe (see its README.md), next to the repo.
FIXTURES_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "caffe-fixtures"


@pytest.fixture(scope="session")
def fixtures_dir():
    """Path of the Caffe-made golden files; skips the test if absent."""
    if not FIXTURES_DIR.is_dir():
        pytest.skip("Caffe golden files not found at %s" % FIXTURES_DIR)
    return FIXTURES_DIR
