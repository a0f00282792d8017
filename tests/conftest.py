"""Shared pytest fixtures."""

from pathlib import Path

import pytest

# Golden files written by BVLC Caffe (tests/golden/caffe/README.md says how each was made).
FIXTURES_DIR = Path(__file__).resolve().parent / "golden" / "caffe"


@pytest.fixture(scope="session")
def fixtures_dir():
    """Path of the Caffe-made golden files, which ship with the repository."""
    return FIXTURES_DIR
