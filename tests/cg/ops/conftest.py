"""Fixtures of the op tests."""
import pytest

from pycaffe_mct.cg import scheduler


@pytest.fixture
def literal_mode():
    """Run the test on the literal executor (tile by tile)."""
    with scheduler.execution("literal"):
        yield
