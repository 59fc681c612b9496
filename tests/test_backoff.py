"""The one exponential backoff."""

from __future__ import annotations

import pytest

from assetd.backoff import Backoff


def test_delays_double_up_to_the_most_and_reset_starts_again() -> None:
    """Each delay doubles the last, never past ``most``; a reset starts from ``first``."""
    backoff = Backoff(0.2, 1.0)
    assert not backoff.failing
    assert [backoff.delay() for _ in range(5)] == [0.2, 0.4, 0.8, 1.0, 1.0]
    assert backoff.failing
    backoff.reset()
    assert not backoff.failing
    assert backoff.delay() == 0.2


@pytest.mark.parametrize(("first", "most"), [(0, 1), (-1, 1), (2, 1)])
def test_bounds_that_cannot_back_off_are_refused(first: float, most: float) -> None:
    """A first delay that is not positive, or above the most, is a programming error."""
    with pytest.raises(ValueError):
        Backoff(first, most)
